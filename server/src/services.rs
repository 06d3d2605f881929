//! What every worker shares: the store, sessions, the HTTP client for outgoing requests, and
//! how pages are dressed (the browser bundle, dev mode). Handlers, effects and the renderer
//! all take it; it imports none of them.

use std::sync::Arc;

use crate::auth::Auth;
use crate::store::Store;

/// What every worker shares: the store, sessions, and an HTTP client for outgoing requests.
pub struct Services {
    pub store: Arc<Store>,
    pub auth: Arc<Auth>,
    /// The browser bundle's script, when a matching bundle is installed (full pages load it).
    pub client_script: Option<String>,
    /// Dev mode: pages reload themselves when the app is recompiled.
    pub dev: bool,
    pub client: crate::effects::http::HttpClient,
    /// Wakes the flow runner when an instance becomes runnable.
    pub flows: Arc<crate::flows::Flows>,
    /// Federation: who this instance is, its secret, the sender's wake-up.
    pub federation: Arc<crate::federation::Federation>,
}

impl Services {
    pub fn new(
        store: Arc<Store>,
        auth: Arc<Auth>,
        client_script: Option<String>,
        dev: bool,
        flows: Arc<crate::flows::Flows>,
        federation: Arc<crate::federation::Federation>,
    ) -> Services {
        let client = crate::effects::http::client();
        Services {
            store,
            auth,
            client_script,
            dev,
            client,
            flows,
            federation,
        }
    }
}
