//! Post bodies are CommonMark. [`to_tree`] turns one into an SX element tree — never into
//! HTML text: the kernel's `render-html` (or the browser engine's DOM builder) makes the
//! markup, escaping every text and attribute. The server's post pages (the `markdown`
//! effect) and the editor island's preview (`island/`) both call this one function, so the
//! preview is the published page.
//!
//! What is kept, and what is not:
//! - paragraphs, headings, block quotes, lists (an ordered list keeps its start), code
//!   blocks (`(pre (code :class "language-x" ...))`), rules, emphasis, strong emphasis,
//!   inline code, line breaks, links and images;
//! - HTML written in a post (inline or as a block) is shown as text, never as markup;
//! - a link or image keeps its URL only when it is `http:`, `https:`, `mailto:` or relative
//!   (no scheme): `javascript:`, `data:`, `vbscript:`... lose the link (its text stays) or
//!   the image (its alt text stays);
//! - containers nested deeper than [`MAX_DEPTH`] put their content into the deepest allowed
//!   one, so no tree is deeper than that (renderers and the wire reader recurse on depth);
//! - input longer than [`MAX_INPUT`] bytes is cut there (at a character boundary), with a
//!   note saying so: the blog's editor refuses bodies that long anyway.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag};
use sx_kernel::Value;

/// How many elements deep a tree may be (`(<> ...)` not counted).
pub const MAX_DEPTH: usize = 32;
/// The longest text rendered, in bytes.
pub const MAX_INPUT: usize = 256 * 1024;

/// The schemes a link or image may use; anything else with a scheme is dropped.
const SAFE_SCHEMES: &[&str] = &["http", "https", "mailto"];

/// An element being built: its tag and attributes (`None`: a container past [`MAX_DEPTH`]
/// or a dropped link, whose children go to the element below it), its children.
struct Open {
    head: Option<Vec<Value>>,
    children: Vec<Value>,
    /// An image collects its alt text here instead of children.
    image: Option<ImageParts>,
    /// A code block: `head` is its `code` element, wrapped in `pre` when it closes.
    pre: bool,
}

struct ImageParts {
    src: Option<String>,
    title: String,
    alt: String,
}

/// The Markdown `text` as an SX element tree: `(<> block ...)`.
pub fn to_tree(text: &str) -> Value {
    let (text, cut) = if text.len() > MAX_INPUT {
        let mut end = MAX_INPUT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        (&text[..end], true)
    } else {
        (text, false)
    };
    let text = cap_prefixes(text);
    let mut stack: Vec<Open> = vec![Open::plain(Some(vec![Value::sym("<>")]))];
    // Elements open on the stack (the root fragment not counted).
    let mut depth = 0usize;
    for event in Parser::new_ext(&text, Options::empty()) {
        match event {
            Event::Start(tag) => {
                // Inside an image everything is alt text: markup there opens nothing.
                if in_image(&stack) {
                    stack.push(Open::plain(None));
                    continue;
                }
                let open = start(tag, depth);
                depth += open.levels();
                stack.push(open);
            }
            Event::End(_) => {
                if stack.len() < 2 {
                    continue;
                }
                let Some(open) = stack.pop() else { continue };
                if in_image(&stack) {
                    // Markup inside alt text: its text was already collected.
                    continue;
                }
                depth -= open.levels();
                if let Some(parent) = stack.last_mut() {
                    finish(open, &mut parent.children);
                }
            }
            Event::Text(t) | Event::Code(t) if in_image(&stack) => alt_push(&mut stack, &t),
            Event::Text(t) => push_text(&mut stack, &t),
            Event::Code(t) => push(&mut stack, element("code", vec![], vec![Value::str(&t)])),
            // HTML written in the post is text.
            Event::Html(t) | Event::InlineHtml(t) => {
                if in_image(&stack) {
                    alt_push(&mut stack, &t);
                } else {
                    push_text(&mut stack, &t);
                }
            }
            Event::SoftBreak => {
                if in_image(&stack) {
                    alt_push(&mut stack, " ");
                } else {
                    push_text(&mut stack, "\n");
                }
            }
            Event::HardBreak => {
                if in_image(&stack) {
                    alt_push(&mut stack, " ");
                } else {
                    push(&mut stack, element("br", vec![], vec![]));
                }
            }
            Event::Rule => push(&mut stack, element("hr", vec![], vec![])),
            // Not enabled by the options above; kept as text if they ever appear.
            Event::InlineMath(t) | Event::DisplayMath(t) => push_text(&mut stack, &t),
            Event::FootnoteReference(t) => push_text(&mut stack, &t),
            Event::TaskListMarker(done) => {
                push_text(&mut stack, if done { "[x] " } else { "[ ] " })
            }
        }
    }
    // Unbalanced events cannot happen with pulldown-cmark; close whatever is open anyway.
    while stack.len() > 1 {
        if let Some(open) = stack.pop() {
            if let Some(parent) = stack.last_mut() {
                finish(open, &mut parent.children);
            }
        }
    }
    let Some(mut root) = stack.pop() else {
        return Value::list(vec![Value::sym("<>")]);
    };
    if cut {
        root.children.push(element(
            "p",
            vec![("class", Value::str("markdown-cut"))],
            vec![Value::str(&format!(
                "(The text is longer than {MAX_INPUT} bytes; the rest is not shown.)"
            ))],
        ));
    }
    let mut items = root.head.unwrap_or_default();
    items.extend(root.children);
    Value::list(items)
}

/// Lines that open more than [`MAX_DEPTH`] block containers at once (`>>>>...`,
/// `- - - ...`, `1. 1. ...`) get a backslash before the marker past the limit, so the rest
/// of the line is text: the parser takes time quadratic in such nesting, and the tree would
/// flatten it anyway.
fn cap_prefixes(text: &str) -> std::borrow::Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut done = 0; // bytes of `text` already copied to `out`
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        if let Some(at) = past_limit(line) {
            let out = out.get_or_insert_with(|| String::with_capacity(text.len() + 64));
            out.push_str(&text[done..line_start + at.0]);
            out.push_str(&line[at.0..at.1]);
            out.push('\\');
            done = line_start + at.1;
        }
        line_start += line.len();
    }
    match out {
        None => std::borrow::Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[done..]);
            std::borrow::Cow::Owned(out)
        }
    }
}

/// Where the marker past the limit starts in `line`, and where its backslash goes (the
/// same place, or after the digits of an ordered item), or `None` when the line nests less.
fn past_limit(line: &str) -> Option<(usize, usize)> {
    let bytes = line.as_bytes();
    let spaced = |i: usize| i >= bytes.len() || matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r');
    let mut i = 0;
    let mut markers = 0;
    loop {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        let &b = bytes.get(i)?;
        let (escape_at, next) = match b {
            b'>' => (i, i + 1),
            b'-' | b'*' | b'+' if spaced(i + 1) => (i, i + 1),
            b'0'..=b'9' => {
                let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
                let end = i + digits;
                if digits <= 9 && matches!(bytes.get(end), Some(b'.' | b')')) && spaced(end + 1) {
                    (end, end + 1)
                } else {
                    return None;
                }
            }
            _ => return None,
        };
        if markers == MAX_DEPTH {
            return Some((i, escape_at));
        }
        markers += 1;
        i = next;
    }
}

impl Open {
    fn plain(head: Option<Vec<Value>>) -> Open {
        Open {
            head,
            children: Vec::new(),
            image: None,
            pre: false,
        }
    }

    /// How many elements deep this one goes when closed.
    fn levels(&self) -> usize {
        match (&self.head, self.pre) {
            (None, _) => 0,
            (Some(_), false) => 1,
            (Some(_), true) => 2,
        }
    }
}

fn in_image(stack: &[Open]) -> bool {
    stack.iter().any(|o| o.image.is_some())
}

fn alt_push(stack: &mut [Open], text: &str) {
    if let Some(image) = stack.iter_mut().rev().find_map(|o| o.image.as_mut()) {
        image.alt.push_str(text);
    }
}

/// An element: `(tag :name value ... child ...)`.
fn element(tag: &str, attrs: Vec<(&str, Value)>, children: Vec<Value>) -> Value {
    let mut items = head(tag, attrs);
    items.extend(children);
    Value::list(items)
}

fn head(tag: &str, attrs: Vec<(&str, Value)>) -> Vec<Value> {
    let mut items = vec![Value::sym(tag)];
    for (name, value) in attrs {
        items.push(Value::kw(name));
        items.push(value);
    }
    items
}

fn push(stack: &mut [Open], v: Value) {
    if let Some(open) = stack.last_mut() {
        open.children.push(v);
    }
}

/// Adds text, joined to the text before it (the parser splits text at some characters).
fn push_text(stack: &mut [Open], text: &str) {
    let Some(open) = stack.last_mut() else { return };
    if let Some(Value::Str(last)) = open.children.last_mut() {
        let mut joined = String::with_capacity(last.len() + text.len());
        joined.push_str(last);
        joined.push_str(text);
        *last = joined.into();
        return;
    }
    open.children.push(Value::str(text));
}

/// Closes an element into its parent's children: a dropped or flattened one gives its
/// children to the parent.
fn finish(open: Open, into: &mut Vec<Value>) {
    if let Some(image) = open.image {
        match image.src {
            Some(src) => {
                let mut attrs = vec![("src", Value::str(&src)), ("alt", Value::str(&image.alt))];
                if !image.title.is_empty() {
                    attrs.push(("title", Value::str(&image.title)));
                }
                into.push(element("img", attrs, vec![]));
            }
            None => into.push(Value::str(&image.alt)),
        }
        return;
    }
    match open.head {
        Some(mut items) => {
            items.extend(open.children);
            let made = Value::list(items);
            into.push(if open.pre {
                element("pre", vec![], vec![made])
            } else {
                made
            });
        }
        None => {
            for child in open.children {
                match (into.last_mut(), child) {
                    (Some(Value::Str(last)), Value::Str(s)) => {
                        let mut joined = String::with_capacity(last.len() + s.len());
                        joined.push_str(last);
                        joined.push_str(&s);
                        *last = joined.into();
                    }
                    (_, child) => into.push(child),
                }
            }
        }
    }
}

/// What a start tag opens, `depth` elements deep.
fn start(tag: Tag<'_>, depth: usize) -> Open {
    // A container past the limit adds no element; its content goes to the one below.
    let limited = |tag: &str, attrs: Vec<(&str, Value)>| {
        Open::plain((depth < MAX_DEPTH).then(|| head(tag, attrs)))
    };
    match tag {
        Tag::Paragraph | Tag::HtmlBlock => limited("p", vec![]),
        Tag::Heading { level, .. } => limited(heading(level), vec![]),
        Tag::BlockQuote(_) => limited("blockquote", vec![]),
        Tag::CodeBlock(kind) => {
            let lang = match &kind {
                CodeBlockKind::Fenced(info) => info.split_whitespace().next().unwrap_or(""),
                CodeBlockKind::Indented => "",
            };
            if depth + 2 > MAX_DEPTH {
                return Open::plain(None);
            }
            let attrs = if lang.is_empty() {
                vec![]
            } else {
                vec![("class", Value::str(&format!("language-{lang}")))]
            };
            Open {
                pre: true,
                ..Open::plain(Some(head("code", attrs)))
            }
        }
        Tag::List(Some(first)) if first != 1 => limited(
            "ol",
            vec![(
                "start",
                Value::Int(i64::try_from(first).unwrap_or(i64::MAX)),
            )],
        ),
        Tag::List(Some(_)) => limited("ol", vec![]),
        Tag::List(None) => limited("ul", vec![]),
        Tag::Item => limited("li", vec![]),
        Tag::Emphasis => limited("em", vec![]),
        Tag::Strong => limited("strong", vec![]),
        Tag::Strikethrough => limited("del", vec![]),
        Tag::Link {
            dest_url, title, ..
        } => match safe_url(&dest_url) {
            Some(href) => {
                let mut attrs = vec![("href", Value::str(href))];
                if !title.is_empty() {
                    attrs.push(("title", Value::str(&title)));
                }
                limited("a", attrs)
            }
            None => Open::plain(None),
        },
        Tag::Image {
            dest_url, title, ..
        } => Open {
            image: Some(ImageParts {
                src: safe_url(&dest_url).map(str::to_string),
                title: title.to_string(),
                alt: String::new(),
            }),
            ..Open::plain(None)
        },
        // Not enabled by the options above: their content is kept, without markup.
        _ => Open::plain(None),
    }
}

fn heading(level: HeadingLevel) -> &'static str {
    match level {
        HeadingLevel::H1 => "h1",
        HeadingLevel::H2 => "h2",
        HeadingLevel::H3 => "h3",
        HeadingLevel::H4 => "h4",
        HeadingLevel::H5 => "h5",
        HeadingLevel::H6 => "h6",
    }
}

/// `url` when a link may point there: `http:`, `https:`, `mailto:`, or no scheme at all
/// (relative: `/path`, `page`, `#part`, `?q`). Browsers ignore ASCII tabs and newlines in
/// URLs and leading spaces and control characters, so those are stripped before looking.
pub fn safe_url(url: &str) -> Option<&str> {
    let cleaned: String = url
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    // A scheme is letters, digits, + - . before the first ':' that comes before any / ? #.
    let end = cleaned.find([':', '/', '?', '#']);
    match end {
        Some(i) if cleaned[i..].starts_with(':') => {
            let scheme = cleaned[..i].to_ascii_lowercase();
            SAFE_SCHEMES
                .contains(&scheme.as_str())
                .then_some(url.trim())
        }
        _ => Some(url.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The markup the tree renders to, as the post page and the preview show it.
    fn html(markdown: &str) -> String {
        sx_kernel::html::render(&to_tree(markdown)).expect("every tree renders")
    }

    fn depth(v: &Value) -> usize {
        match v {
            Value::List(items) => {
                let own = usize::from(
                    !matches!(items.first(), Some(Value::Symbol(s)) if s.name() == "<>"),
                );
                own + items.iter().map(depth).max().unwrap_or(0)
            }
            _ => 0,
        }
    }

    #[test]
    fn plain_text_renders_as_paragraphs() {
        assert_eq!(
            html("First paragraph.\n\nSecond one,\nsame paragraph."),
            "<p>First paragraph.</p><p>Second one,\nsame paragraph.</p>"
        );
        assert_eq!(html(""), "");
        assert_eq!(html("\n\n  \n"), "");
    }

    #[test]
    fn the_tree_is_sx_elements() {
        let tree = to_tree("# Hi\n\nSome *text*.");
        assert_eq!(
            sx_kernel::printer::repr(&tree),
            r#"(<> (h1 "Hi") (p "Some " (em "text") "."))"#
        );
    }

    #[test]
    fn headings_lists_code_quotes_links_images_emphasis() {
        assert_eq!(html("## Two\n###### Six"), "<h2>Two</h2><h6>Six</h6>");
        assert_eq!(
            html("- a\n- b\n\n3. c\n4. d\n"),
            "<ul><li>a</li><li>b</li></ul><ol start=\"3\"><li>c</li><li>d</li></ol>"
        );
        assert_eq!(html("1. one"), "<ol><li>one</li></ol>");
        assert_eq!(
            html("```rust\nfn main() {}\n```"),
            "<pre><code class=\"language-rust\">fn main() {}\n</code></pre>"
        );
        assert_eq!(
            html("    indented <b>"),
            "<pre><code>indented &lt;b&gt;</code></pre>"
        );
        assert_eq!(
            html("> quoted\n> > twice"),
            "<blockquote><p>quoted</p><blockquote><p>twice</p></blockquote></blockquote>"
        );
        assert_eq!(
            html("[SX](https://example.com/a?b=1&c=2 \"Title\")"),
            "<p><a href=\"https://example.com/a?b=1&amp;c=2\" title=\"Title\">SX</a></p>"
        );
        assert_eq!(
            html("![a *cat*](/static/cat.png)"),
            "<p><img src=\"/static/cat.png\" alt=\"a cat\"></p>"
        );
        assert_eq!(
            html("*em* **strong** `code` a  \nbreak\n\n---"),
            "<p><em>em</em> <strong>strong</strong> <code>code</code> a<br>break</p><hr>"
        );
        assert_eq!(
            html("[mail](mailto:a@b.c)"),
            "<p><a href=\"mailto:a@b.c\">mail</a></p>"
        );
        assert_eq!(html("[rel](../x#y)"), "<p><a href=\"../x#y\">rel</a></p>");
    }

    #[test]
    fn html_in_a_post_is_text() {
        assert_eq!(
            html("<script>alert(1)</script>"),
            "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
        );
        assert_eq!(
            html("Hi <img src=x onerror=alert(1)> there"),
            "<p>Hi &lt;img src=x onerror=alert(1)&gt; there</p>"
        );
        let rendered =
            html("<div>\n<script>x()</script>\n</div>\n\n<iframe src=\"https://evil\"></iframe>");
        assert!(!rendered.contains("<script"), "{rendered}");
        assert!(!rendered.contains("<iframe"), "{rendered}");
        assert!(!rendered.contains("<div"), "{rendered}");
        assert!(rendered.contains("&lt;script&gt;"), "{rendered}");
    }

    #[test]
    fn dangerous_urls_lose_their_link_or_image() {
        for url in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " javascript:alert(1)",
            "java\tscript:alert(1)",
            "java%0ascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:x",
            "file:///etc/passwd",
        ] {
            let link = html(&format!("[click](<{url}>)"));
            assert!(!link.contains("<a"), "{url}: {link}");
            assert!(link.contains("click"), "{url}: {link}");
            let image = html(&format!("![alt text](<{url}>)"));
            assert!(!image.contains("<img"), "{url}: {image}");
            assert!(image.contains("alt text"), "{url}: {image}");
        }
        // An autolink with a bad scheme and a reference link too.
        assert!(!html("<javascript:alert(1)>").contains("href"));
        assert!(!html("[x][r]\n\n[r]: javascript:alert(1)").contains("href"));
        assert_eq!(safe_url("HTTPS://example.com"), Some("HTTPS://example.com"));
        assert_eq!(safe_url("/a:b"), Some("/a:b"));
        assert_eq!(safe_url("page?x=a:b"), Some("page?x=a:b"));
        assert_eq!(safe_url("\u{1}javascript:x"), None);
    }

    #[test]
    fn deep_nesting_is_capped() {
        for text in [
            ">".repeat(50_000) + " deep",
            "- ".repeat(20_000) + "deep",
            "*".repeat(30_000) + "deep" + &"*".repeat(30_000),
            "[".repeat(20_000) + "deep" + &"](/x)".repeat(20_000),
            "> ".repeat(50_000) + "deep",
            "1. ".repeat(30_000) + "deep",
            "> - 1) ".repeat(10_000) + "deep",
            (0..300)
                .map(|k| " ".repeat(2 * k) + "- deep\n")
                .collect::<String>(),
        ] {
            let tree = to_tree(&text);
            assert!(depth(&tree) <= MAX_DEPTH, "depth {}", depth(&tree));
            let rendered = sx_kernel::html::render(&tree).unwrap();
            assert!(rendered.contains("deep"));
            // The wire form reads back (the browser engine's reader has a depth limit).
            let wire = sx_kernel::printer::repr(&tree);
            assert!(sx_kernel::reader::read_one(&wire).is_ok());
        }
    }

    #[test]
    fn a_line_past_the_depth_limit_keeps_the_rest_as_text() {
        let line = ">".repeat(MAX_DEPTH + 3) + " end";
        let rendered = html(&line);
        assert!(rendered.contains("&gt;&gt;&gt; end"), "{rendered}");
        let ordered = "1. ".repeat(MAX_DEPTH + 1) + "end";
        let rendered = html(&ordered);
        assert!(rendered.contains("1. end"), "{rendered}");
        // Lines under the limit are untouched.
        assert_eq!(cap_prefixes("> > a\n- b"), "> > a\n- b");
    }

    #[test]
    fn huge_input_is_cut_with_a_note() {
        let big = "word ".repeat(MAX_INPUT / 5 + 1000) + "END";
        let rendered = html(&big);
        assert!(!rendered.contains("END"));
        assert!(rendered.contains("markdown-cut"));
        // Cut at a character boundary.
        let wide = "é".repeat(MAX_INPUT);
        assert!(html(&wide).contains("markdown-cut"));
        // Just under the limit: all of it.
        let fits = "a".repeat(MAX_INPUT - 3) + "END";
        let rendered = html(&fits);
        assert!(rendered.contains("END") && !rendered.contains("markdown-cut"));
    }

    #[test]
    fn every_tree_renders() {
        // A mix of constructs, nested in odd ways: rendering never fails.
        let pieces = [
            "# h",
            "> q",
            "- l",
            "1. o",
            "```\nc\n```",
            "*e*",
            "**s**",
            "`c`",
            "[l](/u)",
            "![i](/i)",
            "<b>",
            "---",
            "  \n",
            "\\*",
            "&amp;",
            "![x ![y](/y)](/x)",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let text = format!("{a}{b}\n{c} {a}\n\n{b}");
                    assert!(sx_kernel::html::render(&to_tree(&text)).is_ok(), "{text:?}");
                }
            }
        }
    }
}
