//! Seeds a store for the relations benchmark (bench/relations): POSTS published posts, each
//! with TAGS distinct tags drawn from a vocabulary of VOCABULARY (a fixed pseudo-random
//! sequence, so every run seeds the same store), and every tenth post related to the next.
//! Posts go in through `Store::append`, as the effects write them: ops on content streams.
//!
//! Usage: seed_posts DIR [POSTS=10000] [TAGS=5] [VOCABULARY=200]

use sx_kernel::value::kw_dict;
use sx_kernel::Value;
use sx_server::store::Store;

/// A small deterministic generator (xorshift64*): the same store on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn arg(args: &[String], i: usize, default: u64) -> u64 {
    args.get(i)
        .map_or(default, |a| a.parse().expect("a number"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: seed_posts DIR [POSTS] [TAGS] [VOCABULARY]");
        std::process::exit(2);
    };
    let (posts, tags, vocabulary) = (arg(&args, 2, 10_000), arg(&args, 3, 5), arg(&args, 4, 200));
    let store = Store::open(std::path::Path::new(dir)).expect("the store");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = 1_700_000_000_000i64;
    let slug = |i: u64| format!("post-{i}");
    for chunk in (0..posts).collect::<Vec<_>>().chunks(500) {
        let mut ops = Vec::new();
        for &i in chunk {
            let mut chosen: Vec<u64> = Vec::new();
            while (chosen.len() as u64) < tags.min(vocabulary) {
                let t = rng.below(vocabulary);
                if !chosen.contains(&t) {
                    chosen.push(t);
                }
            }
            let at = start + i as i64 * 60_000;
            let tag_list = chosen.iter().map(|t| Value::str(&format!("tag-{t}")));
            ops.push((
                slug(i),
                kw_dict([
                    ("op", Value::str("create")),
                    ("title", Value::str(&format!("Post number {i}"))),
                    ("body", Value::str("A paragraph of text.\n\nAnother one.")),
                    ("author", Value::str("ann")),
                    ("tags", Value::list(tag_list.collect())),
                    ("at", Value::Int(at)),
                ]),
            ));
            ops.push((
                slug(i),
                kw_dict([("op", Value::str("publish")), ("at", Value::Int(at + 1))]),
            ));
        }
        let ops: Vec<(&str, Value)> = ops.iter().map(|(s, op)| (s.as_str(), op.clone())).collect();
        store.append(&ops).expect("appending posts");
    }
    // Explicit relations, both directions in one commit, as POST /:slug/relate writes them.
    for i in (0..posts.saturating_sub(1)).step_by(10) {
        let relate = |other: String| {
            kw_dict([
                ("op", Value::str("relate")),
                ("other", Value::str(&other)),
                ("at", Value::Int(start + (posts as i64 + 1) * 60_000)),
            ])
        };
        let (a, b) = (slug(i), slug(i + 1));
        store
            .append(&[(&a, relate(b.clone())), (&b, relate(a.clone()))])
            .expect("relating posts");
    }
    store.sync().expect("sync");
    println!(
        "seeded {posts} posts with {} tag facts",
        posts * tags.min(vocabulary)
    );
}
