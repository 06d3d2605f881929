//! HTML as data (SX.md §6): the tag names the expander turns into elements, and
//! `render-html`, which turns element trees into an HTML string.
//!
//! The SX wire form of a tree is just its `repr`; the browser renders that with the same
//! rules as here (see `client/`).

use crate::error::type_error;
use crate::value::Value;

const TAGS: &[&str] = &[
    // HTML
    "a",
    "abbr",
    "address",
    "area",
    "article",
    "aside",
    "audio",
    "b",
    "base",
    "bdi",
    "bdo",
    "blockquote",
    "body",
    "br",
    "button",
    "canvas",
    "caption",
    "cite",
    "code",
    "col",
    "colgroup",
    "data",
    "datalist",
    "dd",
    "del",
    "details",
    "dfn",
    "dialog",
    "div",
    "dl",
    "dt",
    "em",
    "embed",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "header",
    "hgroup",
    "hr",
    "html",
    "i",
    "iframe",
    "img",
    "input",
    "ins",
    "kbd",
    "label",
    "legend",
    "li",
    "link",
    "main",
    "map",
    "mark",
    "menu",
    "meta",
    "meter",
    "nav",
    "noscript",
    "object",
    "ol",
    "optgroup",
    "option",
    "output",
    "p",
    "param",
    "picture",
    "pre",
    "progress",
    "q",
    "rp",
    "rt",
    "ruby",
    "s",
    "samp",
    "script",
    "search",
    "section",
    "select",
    "slot",
    "small",
    "source",
    "span",
    "strong",
    "style",
    "sub",
    "summary",
    "sup",
    "table",
    "tbody",
    "td",
    "template",
    "textarea",
    "tfoot",
    "th",
    "thead",
    "time",
    "title",
    "tr",
    "track",
    "u",
    "ul",
    "var",
    "video",
    "wbr",
    // SVG
    "svg",
    "g",
    "defs",
    "symbol",
    "use",
    "path",
    "rect",
    "circle",
    "ellipse",
    "line",
    "polyline",
    "polygon",
    "text",
    "tspan",
    "textPath",
    "marker",
    "pattern",
    "mask",
    "clipPath",
    "linearGradient",
    "radialGradient",
    "stop",
    "filter",
    "foreignObject",
    "image",
    "animate",
    "animateTransform",
    "desc",
    "view",
    // fragment
    "<>",
];

const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

pub fn is_tag(name: &str) -> bool {
    TAGS.contains(&name)
}

pub fn is_void(name: &str) -> bool {
    VOID.contains(&name)
}

/// Element names `el` accepts: letters first, then letters, digits, `-`, `_`, `.`, `:`.
pub fn valid_tag_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

pub fn escape_into(out: &mut String, text: &str) {
    // Copies the runs between special bytes whole (they are ASCII, so never inside a
    // multi-byte character).
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        let entity = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&text[start..i]);
        out.push_str(entity);
        start = i + 1;
    }
    out.push_str(&text[start..]);
}

/// `(render-html tree)`.
pub fn render(tree: &Value) -> Result<String, Value> {
    // Pages are kilobytes: start there rather than growing through every small size.
    let mut out = String::with_capacity(8192);
    render_node(&mut out, tree)?;
    Ok(out)
}

/// Renders `tree` at the end of `out`.
pub fn render_into(out: &mut String, tree: &Value) -> Result<(), Value> {
    render_node(out, tree)
}

fn render_node(out: &mut String, v: &Value) -> Result<(), Value> {
    match v {
        Value::Nil | Value::Bool(_) => {}
        Value::Str(s) => escape_into(out, s),
        Value::Raw(s) => out.push_str(s),
        Value::List(items) => match items.first() {
            None => {}
            Some(Value::Symbol(tag)) => {
                let rest = items.iter().skip(1);
                if tag.name() == "<>" {
                    for child in rest {
                        render_node(out, child)?;
                    }
                } else {
                    render_element(out, tag.name(), rest, v)?;
                }
            }
            Some(_) => {
                for child in items.iter() {
                    render_node(out, child)?;
                }
            }
        },
        other => escape_into(out, &crate::printer::display(other)),
    }
    Ok(())
}

fn render_element<'a>(
    out: &mut String,
    tag: &str,
    mut args: std::iter::Skip<crate::value::ListIter<'a>>,
    whole: &Value,
) -> Result<(), Value> {
    if !valid_tag_name(tag) {
        return Err(type_error(
            format!("{tag:?} is not a valid element name"),
            vec![whole.clone()],
        ));
    }
    out.push('<');
    out.push_str(tag);
    // Attributes: keyword, value pairs up to the first child (a keyword with no value after
    // it is a child).
    loop {
        let mut ahead = args.clone();
        let (Some(Value::Keyword(name)), Some(value)) = (ahead.next(), ahead.next()) else {
            break;
        };
        args = ahead;
        match value {
            Value::Nil | Value::Bool(false) => {}
            Value::Bool(true) => {
                out.push(' ');
                out.push_str(name.name());
            }
            value => {
                out.push(' ');
                out.push_str(name.name());
                out.push_str("=\"");
                match value {
                    Value::Raw(s) => escape_into(out, s),
                    other => escape_into(out, &crate::printer::display(other)),
                }
                out.push('"');
            }
        }
    }
    out.push('>');
    if is_void(tag) {
        // Children that render nothing are allowed (SX.md §10): nil, booleans and `()`,
        // as written; a non-empty list is an error even if all it holds is nil.
        let renders_nothing = |c: &Value| {
            matches!(c, Value::Nil | Value::Bool(_)) || matches!(c, Value::List(l) if l.is_empty())
        };
        if !args.all(renders_nothing) {
            return Err(type_error(
                format!("<{tag}> is a void element and takes no children"),
                vec![whole.clone()],
            ));
        }
        return Ok(());
    }
    for child in args {
        render_node(out, child)?;
    }
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
    Ok(())
}
