//! The editor island (issue 17): a leptos component that enhances the blog's post form on
//! `/new` and `/:slug/edit`. The page's form keeps working without it; the island adds a live
//! preview rendered by the same mapping as the published page (`sx-markdown` + the kernel's
//! `render-html`), a word count, keyboard shortcuts, Save/Publish/Schedule buttons, and
//! autosave (local storage at every keystroke, the server a moment after the last one and on
//! blur, retried when it fails, a conflict shown with both texts when the post moved on).
//!
//! Built to its own wasm file (`.ci/build`), which `/__sx/boot.js` imports only when a page
//! has an element with `data-island`; it then calls [`mount`].

pub mod logic;

#[cfg(target_arch = "wasm32")]
mod editor;

#[cfg(target_arch = "wasm32")]
pub use editor::mount;
