//! `{:op "markdown" :text t}` → the CommonMark text `t` as an SX element tree, `(<> ...)`:
//! what the blog's post pages show (`sx-markdown`, the same mapping the editor island's
//! preview uses). HTML in the text is text; links and images keep only `http:`, `https:`,
//! `mailto:` and relative URLs. Pure: no IO.

use sx_kernel::value::Dict;
use sx_kernel::Value;

use super::{text, Context};

pub async fn render(d: &Dict, _: &Context<'_>) -> Result<Value, Value> {
    Ok(sx_markdown::to_tree(&text(d, "markdown", "text")?))
}
