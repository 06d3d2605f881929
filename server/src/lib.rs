//! The native host for SX apps (DESIGN.md §3). So far: the LMDB store (`store`). The axum
//! server, handlers run on the VM and the blog pages arrive with the rest of issue 4.

pub mod store;
