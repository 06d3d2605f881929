//! SX element trees (the wire form, read in data mode) to DOM nodes, by the rules of
//! `render-html` (kernel/src/html.rs): `nil` and booleans are nothing, strings are text,
//! `(tag :attr value ... children)` is an element, `(<> ...)` a fragment, `(raw! "html")`
//! trusted HTML. The DOM built here equals the DOM the browser parses from `render-html`.
//!
//! `<script>` elements in fragments are not created: swapped content never runs code (the
//! shell loads what a page needs). A console warning says so.

use sx_kernel::Value;
use wasm_bindgen::JsCast;
use web_sys::{Document, DocumentFragment, Element, HtmlTemplateElement, Node};

const SVG: &str = "http://www.w3.org/2000/svg";

fn js_error(e: wasm_bindgen::JsValue) -> String {
    crate::js_text(&e)
}

/// The nodes of `tree` in a fragment, ready to insert.
pub fn fragment(doc: &Document, tree: &Value) -> Result<DocumentFragment, String> {
    let fragment = doc.create_document_fragment();
    append(doc, &fragment, tree, false)?;
    Ok(fragment)
}

fn raw_html(doc: &Document, parent: &Node, html: &str) -> Result<(), String> {
    let template: HtmlTemplateElement = doc
        .create_element("template")
        .map_err(js_error)?
        .unchecked_into();
    template.set_inner_html(html);
    parent.append_child(&template.content()).map_err(js_error)?;
    Ok(())
}

fn append(doc: &Document, parent: &Node, v: &Value, in_svg: bool) -> Result<(), String> {
    match v {
        Value::Nil | Value::Bool(_) => {}
        Value::Str(s) => {
            parent
                .append_child(&doc.create_text_node(s))
                .map_err(js_error)?;
        }
        Value::Raw(html) => raw_html(doc, parent, html)?,
        Value::List(items) => match items.first() {
            None => {}
            Some(Value::Symbol(tag)) => match tag.name() {
                "<>" => {
                    for child in items.iter().skip(1) {
                        append(doc, parent, child, in_svg)?;
                    }
                }
                "raw!" => match items.nth(1) {
                    Some(Value::Str(html)) => raw_html(doc, parent, html)?,
                    _ => return Err("(raw! ...) needs one string".into()),
                },
                name => element(doc, parent, name, items.iter().skip(1), in_svg)?,
            },
            Some(_) => {
                for child in items.iter() {
                    append(doc, parent, child, in_svg)?;
                }
            }
        },
        other => {
            let text = sx_kernel::printer::display(other);
            parent
                .append_child(&doc.create_text_node(&text))
                .map_err(js_error)?;
        }
    }
    Ok(())
}

fn element<'a>(
    doc: &Document,
    parent: &Node,
    tag: &str,
    args: impl Iterator<Item = &'a Value>,
    in_svg: bool,
) -> Result<(), String> {
    if !sx_kernel::html::valid_tag_name(tag) {
        return Err(format!("{tag:?} is not a valid element name"));
    }
    if tag == "script" {
        web_sys::console::warn_1(&"sx: a <script> in swapped content is not run".into());
        return Ok(());
    }
    let svg = in_svg || tag == "svg";
    let el: Element = if svg {
        doc.create_element_ns(Some(SVG), tag)
    } else {
        doc.create_element(tag)
    }
    .map_err(js_error)?;
    let args: Vec<&Value> = args.collect();
    let mut i = 0;
    while i + 1 < args.len() {
        let Value::Keyword(name) = args[i] else { break };
        match args[i + 1] {
            Value::Nil | Value::Bool(false) => {}
            Value::Bool(true) => el.set_attribute(name.name(), "").map_err(js_error)?,
            value => {
                let text = match value {
                    Value::Raw(s) => s.to_string(),
                    other => sx_kernel::printer::display(other),
                };
                el.set_attribute(name.name(), &text).map_err(js_error)?;
            }
        }
        i += 2;
    }
    if !sx_kernel::html::is_void(tag) {
        // A <template>'s children belong to its content, as the HTML parser does it.
        let target: Node = match el.dyn_ref::<HtmlTemplateElement>() {
            Some(t) => t.content().into(),
            None => el.clone().into(),
        };
        for child in &args[i..] {
            append(doc, &target, child, svg && tag != "foreignObject")?;
        }
    }
    parent.append_child(&el).map_err(js_error)?;
    Ok(())
}
