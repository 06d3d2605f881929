//! The SSR benchmark's upper bound: a trivial axum server answering `/` and `/welcome/`
//! with fixed bytes (the pages `sx serve` rendered), on the same runtime setup.
//!
//! Usage: fixed_pages PORT INDEX.html POST.html

use axum::http::header;
use axum::routing::get;
use axum::Router;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, index, post] = args.as_slice() else {
        eprintln!("usage: fixed_pages PORT INDEX.html POST.html");
        std::process::exit(2);
    };
    let index: &'static [u8] =
        Box::leak(std::fs::read(index).expect("index page").into_boxed_slice());
    let post: &'static [u8] = Box::leak(std::fs::read(post).expect("post page").into_boxed_slice());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let html = || [(header::CONTENT_TYPE, "text/html; charset=utf-8")];
        let app = Router::new()
            .route("/", get(move || async move { (html(), index) }))
            .route("/welcome/", get(move || async move { (html(), post) }));
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
            .await
            .expect("bind");
        let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
            let _ = stream.set_nodelay(true);
        });
        axum::serve(listener, app).await.expect("serve");
    });
}
