//! Answers kept for routes declared `{:cache true}`: a GET from a visitor who is not signed
//! in, answered 200 by a handler that performed nothing but reads of the posts, is kept with
//! the store's change number read before the handler ran. A later request for the same
//! target gets the kept bytes while that number has not moved; any write of a post moves it
//! (on any node: the number lives in the store), so nothing kept outlives the posts it was
//! made from. What the route's author vouches for with `{:cache true}` is that the answer
//! depends on nothing else of the request than its path and query.
//!
//! Kept answers say `x-sx-cache: hit`; answers that could have been kept but were made
//! afresh say `x-sx-cache: miss`.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;

use crate::exchange::{Reply, Want};

/// At most this many bytes of answers (targets, headers, bodies) are kept; past it, the
/// cache starts over.
const BYTES_KEPT: usize = 32 << 20;
/// A body larger than this is not kept.
const LARGEST_KEPT: usize = 1 << 20;
/// Nor an answer for a longer path and query (any query gets the same answer from many
/// routes: long ones would fill the cache with copies).
const LONGEST_TARGET: usize = 2048;

/// What a kept answer is found by: the version of the apps that made it, whether a page or
/// a fragment was asked for, and the path with its query.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Target {
    generation: u64,
    want: Want,
    path_and_query: String,
}

impl Target {
    pub fn new(generation: u64, want: Want, path_and_query: &str) -> Target {
        Target {
            generation,
            want,
            path_and_query: path_and_query.to_string(),
        }
    }
}

/// A kept answer and the change number of the posts it was made from.
pub struct Kept {
    seq: u64,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Kept {
    /// The bytes it holds.
    fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        headers + self.body.len()
    }
}

#[derive(Default)]
pub struct Pages {
    kept: Mutex<Store>,
}

#[derive(Default)]
struct Store {
    answers: HashMap<Target, std::sync::Arc<Kept>>,
    bytes: usize,
}

impl Pages {
    /// The answer kept for `target`, if it was made from the posts as they are at `seq`.
    pub fn get(&self, target: &Target, seq: u64) -> Option<std::sync::Arc<Kept>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.answers.get(target).filter(|k| k.seq == seq).cloned()
    }

    /// Keeps `reply` for `target` when it can be served again: a 200 that sets no cookie
    /// and is not too large.
    pub fn keep(&self, target: Target, seq: u64, reply: &Reply) {
        let sets_cookie = reply
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("set-cookie"));
        if reply.status != 200
            || sets_cookie
            || reply.body.len() > LARGEST_KEPT
            || target.path_and_query.len() > LONGEST_TARGET
        {
            return;
        }
        let kept = Kept {
            seq,
            status: reply.status,
            headers: reply.headers.clone(),
            body: Bytes::copy_from_slice(&reply.body),
        };
        let size = kept.size() + target.path_and_query.len();
        let mut store = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if store.bytes + size > BYTES_KEPT {
            store.answers.clear();
            store.bytes = 0;
        }
        store.bytes += size;
        if let Some(old) = store
            .answers
            .insert(target.clone(), std::sync::Arc::new(kept))
        {
            store.bytes -= old.size() + target.path_and_query.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn an_answer_is_served_again_only_for_its_target_and_change_number() {
        let pages = Pages::default();
        let target = Target::new(1, Want::Page, "/a?x=1");
        pages.keep(
            target.clone(),
            7,
            &reply(200, &[("content-type", "text/html")], "A"),
        );
        let kept = pages.get(&target, 7).expect("kept");
        assert_eq!((kept.status, &kept.body[..]), (200, &b"A"[..]));
        assert_eq!(
            kept.headers,
            vec![("content-type".into(), "text/html".into())]
        );
        assert!(pages.get(&target, 8).is_none(), "the posts changed");
        for other in [
            Target::new(2, Want::Page, "/a?x=1"),
            Target::new(1, Want::FragmentHtml, "/a?x=1"),
            Target::new(1, Want::Page, "/a?x=2"),
        ] {
            assert!(pages.get(&other, 7).is_none());
        }
        // A newer answer replaces the old one.
        pages.keep(target.clone(), 8, &reply(200, &[], "B"));
        assert_eq!(&pages.get(&target, 8).unwrap().body[..], b"B");
        assert_eq!(pages.kept.lock().unwrap().bytes, "/a?x=1".len() + 1);
    }

    #[test]
    fn failures_cookies_large_bodies_and_long_targets_are_not_kept() {
        let pages = Pages::default();
        let target = Target::new(1, Want::Page, "/");
        pages.keep(target.clone(), 1, &reply(404, &[], "gone"));
        pages.keep(
            target.clone(),
            1,
            &reply(200, &[("Set-Cookie", "a=1")], "x"),
        );
        pages.keep(
            target.clone(),
            1,
            &reply(200, &[], &"x".repeat(LARGEST_KEPT + 1)),
        );
        assert!(pages.get(&target, 1).is_none());
    }

    #[test]
    fn past_its_size_the_cache_starts_over() {
        let pages = Pages::default();
        let body = "x".repeat(LARGEST_KEPT);
        let n = BYTES_KEPT / LARGEST_KEPT;
        for i in 0..=n {
            pages.keep(
                Target::new(1, Want::Page, &format!("/{i}")),
                1,
                &reply(200, &[], &body),
            );
        }
        assert!(
            pages.get(&Target::new(1, Want::Page, "/0"), 1).is_none(),
            "started over"
        );
        let last = Target::new(1, Want::Page, &format!("/{n}"));
        assert!(pages.get(&last, 1).is_some());
        assert!(pages.kept.lock().unwrap().bytes <= BYTES_KEPT);
    }
}
