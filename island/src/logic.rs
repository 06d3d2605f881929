//! The editor's decisions, as plain functions (tested natively): which text to restore, how
//! to read the server's answer to an autosave, when to retry, what the preview shows.

use serde_json::Value as Json;

/// The copy of the text kept in the browser's local storage at every keystroke.
#[derive(Clone, Debug, PartialEq)]
pub struct Local {
    pub title: String,
    pub body: String,
    /// When it was typed (milliseconds since the epoch).
    pub at: f64,
    /// The server revision the text was typed on.
    pub rev: i64,
}

impl Local {
    pub fn to_json(&self) -> String {
        serde_json::json!({"title": self.title, "body": self.body, "at": self.at, "rev": self.rev})
            .to_string()
    }

    /// `None` for anything that is not a copy this editor wrote.
    pub fn from_json(text: &str) -> Option<Local> {
        let v: Json = serde_json::from_str(text).ok()?;
        Some(Local {
            title: v.get("title")?.as_str()?.to_string(),
            body: v.get("body")?.as_str()?.to_string(),
            at: v.get("at")?.as_f64()?,
            rev: v.get("rev").and_then(Json::as_i64).unwrap_or(0),
        })
    }
}

/// Where the text the editor opens with comes from.
#[derive(Debug, PartialEq)]
pub enum Restore {
    /// The page's own text (the server's): there is no newer local copy.
    Server,
    /// The local copy, typed after the server's text was saved.
    Local,
}

/// The text to open with. The browser keeps a copy only while the server lacks it (a copy
/// is removed once the server has saved that text), so a copy that differs from the
/// server's text is unsaved work: it wins, whatever the clocks say. When the server moved on
/// since the revision the copy was typed on, the first save meets the conflict check, which
/// shows both texts.
pub fn choose(server_title: &str, server_body: &str, local: Option<&Local>) -> Restore {
    match local {
        Some(l) if l.title != server_title || l.body != server_body => Restore::Local,
        _ => Restore::Server,
    }
}

/// What the server answered to an autosave.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// Saved as revision `rev` of the post `slug` (edited at `edit`).
    Saved {
        rev: i64,
        slug: String,
        edit: String,
        at: f64,
    },
    /// The post moved on since revision the editor started from: the stored text.
    Conflict {
        rev: i64,
        title: String,
        body: String,
        published: bool,
    },
    /// Anything else: a message for the author (the save is retried).
    Failed(String),
}

pub fn read_answer(status: u16, body: &str) -> Answer {
    let json: Option<Json> = serde_json::from_str(body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(Json::as_str)
            .map(str::to_string)
    };
    let int = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(Json::as_i64)
    };
    match status {
        200 => match (int("rev"), field("slug"), field("edit")) {
            (Some(rev), Some(slug), Some(edit)) => Answer::Saved {
                rev,
                slug,
                edit,
                at: json
                    .as_ref()
                    .and_then(|j| j.get("at"))
                    .and_then(Json::as_f64)
                    .unwrap_or(0.0),
            },
            _ => Answer::Failed("the server's answer was not understood".into()),
        },
        409 => match (int("rev"), field("title"), field("body")) {
            (Some(rev), Some(title), Some(body)) => Answer::Conflict {
                rev,
                title,
                body,
                published: field("status").as_deref() == Some("published"),
            },
            _ => Answer::Failed("the server's answer was not understood".into()),
        },
        0 => Answer::Failed("the server could not be reached".into()),
        _ => Answer::Failed(match field("error") {
            Some(why) => format!("the server answered {status}: {why}"),
            None => format!("the server answered {status}"),
        }),
    }
}

/// How long to wait before retrying after `failures` failed saves in a row: 2 s, doubling,
/// at most 30 s.
pub fn retry_delay_ms(failures: u32) -> u32 {
    let doublings = failures.saturating_sub(1).min(4);
    (2000u32 << doublings).min(30_000)
}

/// Words in the text, as a reader counts them (runs of non-space).
pub fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// The preview's markup: the post page's body, made by the same mapping and renderer.
pub fn preview_html(body: &str) -> String {
    sx_kernel::html::render(&sx_markdown::to_tree(body))
        .unwrap_or_else(|_| String::from("<p>(This text cannot be previewed.)</p>"))
}

/// `HH:MM:SS` (UTC) of a time in milliseconds since the epoch.
pub fn clock(ms: f64) -> String {
    let seconds = (ms / 1000.0).floor() as i64;
    let day = seconds.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02} UTC", day / 3600, day / 60 % 60, day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(title: &str, body: &str, at: f64) -> Local {
        Local {
            title: title.into(),
            body: body.into(),
            at,
            rev: 3,
        }
    }

    #[test]
    fn the_newest_text_wins() {
        assert_eq!(choose("T", "B", None), Restore::Server);
        // Unsaved text in the browser: the local copy.
        assert_eq!(
            choose("T", "B", Some(&local("T", "B more", 200.0))),
            Restore::Local
        );
        // Even when the server's text changed since (the save then shows a conflict):
        // never dropped on a clock's word.
        assert_eq!(
            choose("T", "B2", Some(&local("T", "B more", 1.0))),
            Restore::Local
        );
        // The same text: nothing to restore.
        assert_eq!(
            choose("T", "B", Some(&local("T", "B", 200.0))),
            Restore::Server
        );
        // A new post (never saved).
        assert_eq!(
            choose("", "", Some(&local("", "draft", 1.0))),
            Restore::Local
        );
    }

    #[test]
    fn local_copies_round_trip_and_junk_is_ignored() {
        let l = local("A \"title\"", "line\nline", 1_700_000_000_000.0);
        assert_eq!(Local::from_json(&l.to_json()), Some(l));
        assert_eq!(Local::from_json("not json"), None);
        assert_eq!(Local::from_json("{\"title\": 1}"), None);
    }

    #[test]
    fn answers() {
        assert_eq!(
            read_answer(
                200,
                r#"{"rev": 4, "slug": "a", "edit": "/a/edit", "at": 5}"#
            ),
            Answer::Saved {
                rev: 4,
                slug: "a".into(),
                edit: "/a/edit".into(),
                at: 5.0
            }
        );
        assert_eq!(
            read_answer(
                409,
                r#"{"rev": 7, "title": "T", "body": "theirs", "status": "draft"}"#
            ),
            Answer::Conflict {
                rev: 7,
                title: "T".into(),
                body: "theirs".into(),
                published: false
            }
        );
        assert_eq!(
            read_answer(500, "<html>oops</html>"),
            Answer::Failed("the server answered 500".into())
        );
        assert_eq!(
            read_answer(422, r#"{"error": "The title is empty."}"#),
            Answer::Failed("the server answered 422: The title is empty.".into())
        );
        assert!(matches!(read_answer(200, "{}"), Answer::Failed(_)));
        assert!(matches!(read_answer(0, ""), Answer::Failed(_)));
    }

    #[test]
    fn retries_back_off_to_thirty_seconds() {
        let delays: Vec<u32> = (1..=7).map(retry_delay_ms).collect();
        assert_eq!(delays, [2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    }

    #[test]
    fn words_and_preview_and_clock() {
        assert_eq!(words("  one two\n\nthree "), 3);
        assert_eq!(words(""), 0);
        assert_eq!(
            preview_html("# Hi\n\n<b>x</b>"),
            "<h1>Hi</h1><p>&lt;b&gt;x&lt;/b&gt;</p>"
        );
        assert_eq!(clock(3_723_000.0), "01:02:03 UTC");
    }
}
