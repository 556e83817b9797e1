//! A user's own workload, read from a file: documents for batch (the notes' `[DOC]`-delimited
//! file, like their `--docs-file`; JSONL with a text field; a folder of `.txt`/`.md` files) and
//! prompts for chat (plain lines; JSONL of OpenAI `messages`; ShareGPT JSON, whose first human
//! turn is the prompt). Every refusal names the file, the line or record, and what was expected.

use caplab_shared::Workload;
use serde_json::Value;

use super::Message;

/// Why a file cannot be a workload.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}: {why}")]
pub struct SourceError {
    pub file: String,
    pub why: String,
}

/// What a file held, read as a workload's inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// How it was read: "[DOC] documents", "JSONL documents", "folder of documents",
    /// "prompt lines", "JSONL messages", "ShareGPT".
    pub format: &'static str,
    /// Batch: the documents.
    pub documents: Vec<String>,
    /// Chat: each request's messages.
    pub chats: Vec<Vec<Message>>,
    /// A trace: when each request arrived, with its lengths (`super::trace`).
    pub trace: Vec<super::trace::TraceRequest>,
    /// ShareGPT: each conversation's recorded answer, beside `chats` (empty for other formats).
    pub answers: Vec<String>,
}

impl Parsed {
    pub fn items(&self) -> usize {
        self.documents.len() + self.chats.len() + self.trace.len()
    }

    fn documents(format: &'static str, documents: Vec<String>) -> Parsed {
        Parsed { format, documents, chats: vec![], trace: vec![], answers: vec![] }
    }

    fn chats(format: &'static str, chats: Vec<Vec<Message>>) -> Parsed {
        Parsed { format, documents: vec![], chats, trace: vec![], answers: vec![] }
    }
}

/// Reads `text` (from a file named `file`) as `workload`'s inputs, choosing the format by what
/// the text is (JSON shapes first, then `[DOC]` markers, else lines or one document).
pub fn parse(file: &str, bytes: &[u8], workload: Workload) -> Result<Parsed, SourceError> {
    let err = |why: String| SourceError { file: file.to_string(), why };
    if bytes.contains(&0) {
        return Err(err("a binary file (it holds NUL bytes): give a text file".into()));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| err(format!("not UTF-8 text (byte {}): give a text file", e.valid_up_to())))?;
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.is_empty() {
        return Err(err("empty: nothing to send".into()));
    }
    // A trace is a trace whichever workload replays it.
    if super::trace::kind(trimmed).is_some() {
        let (format, trace) = super::trace::parse(trimmed).map_err(err)?;
        return Ok(Parsed { format, documents: vec![], chats: vec![], trace, answers: vec![] });
    }
    let parsed = match workload {
        Workload::Batch if trimmed.starts_with('{') => Parsed::documents("JSONL documents", jsonl(trimmed, document_of).map_err(err)?),
        Workload::Batch if trimmed.contains("[DOC]") => Parsed::documents("[DOC] documents", super::parse_documents(trimmed)),
        Workload::Batch => Parsed::documents("one document", vec![trimmed.to_string()]),
        Workload::Chat if trimmed.starts_with('[') => {
            let (chats, answers) = sharegpt(trimmed).map_err(err)?;
            Parsed { answers, ..Parsed::chats("ShareGPT", chats) }
        }
        Workload::Chat if trimmed.starts_with('{') => Parsed::chats("JSONL messages", jsonl(trimmed, messages_of).map_err(err)?),
        Workload::Chat => Parsed::chats("prompt lines", super::parse_prompts(trimmed).into_iter().map(|p| vec![Message::user(p)]).collect()),
    };
    if parsed.items() == 0 {
        return Err(err(format!("read as {} but it holds none", parsed.format)));
    }
    Ok(parsed)
}

/// Every `.txt` and `.md` file of a folder, one document each, in name order.
pub fn folder(dir: &std::path::Path) -> Result<Parsed, SourceError> {
    let name = dir.display().to_string();
    let err = |why: String| SourceError { file: name.clone(), why };
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(format!("cannot be read ({e})")))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "txt" || x == "md"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(err("holds no .txt or .md file".into()));
    }
    let mut documents = Vec::new();
    for p in paths {
        let bytes = std::fs::read(&p).map_err(|e| SourceError { file: p.display().to_string(), why: format!("cannot be read ({e})") })?;
        let one = parse(&p.display().to_string(), &bytes, Workload::Batch)?;
        documents.push(one.documents.join("\n\n"));
    }
    Ok(Parsed::documents("folder of documents", documents))
}

/// One value per non-empty line, each read by `item`; a bad line is named by its number.
fn jsonl<T>(text: &str, item: fn(&Value) -> Result<T, String>) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| format!("line {}: not JSON ({e})", i + 1))?;
        out.push(item(&value).map_err(|why| format!("line {}: {why}", i + 1))?);
    }
    Ok(out)
}

/// A JSONL document: its `text` (or `document`, `content`) field.
fn document_of(v: &Value) -> Result<String, String> {
    ["text", "document", "content"]
        .iter()
        .find_map(|k| v.get(k).and_then(Value::as_str))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "expected an object with a non-empty \"text\" field".to_string())
}

/// A JSONL chat request: `{"messages": [{"role": …, "content": …}, …]}` (or the array alone).
fn messages_of(v: &Value) -> Result<Vec<Message>, String> {
    let list = v.get("messages").unwrap_or(v).as_array().ok_or("expected {\"messages\": [{\"role\": \"user\", \"content\": \"…\"}]}")?;
    let mut out = Vec::new();
    for (j, m) in list.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).ok_or(format!("message {}: no \"role\"", j + 1))?;
        if !matches!(role, "system" | "user" | "assistant" | "developer") {
            return Err(format!("message {}: role {role:?} is not system, user, assistant or developer", j + 1));
        }
        let content = content_text(m.get("content")).ok_or(format!("message {}: no text \"content\"", j + 1))?;
        out.push(Message { role: role.to_string(), content });
    }
    if out.is_empty() {
        return Err("no messages".into());
    }
    if out.last().is_some_and(|m| m.role == "assistant") {
        return Err("the last message is the assistant's: nothing to answer".into());
    }
    Ok(out)
}

/// A message's text: a string, or OpenAI's list of `{"type": "text", "text": …}` parts.
fn content_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
            (!texts.is_empty()).then(|| texts.join("\n"))
        }
        _ => None,
    }
}

/// ShareGPT: `[{"conversations": [{"from": "human", "value": …}, {"from": "gpt", …}]}, …]`; the
/// first human turn of each record is its prompt (as `vllm bench serve` takes it), and the first
/// gpt turn after it its recorded answer (empty when it has none).
fn sharegpt(text: &str) -> Result<(Vec<Vec<Message>>, Vec<String>), String> {
    let records: Vec<Value> = serde_json::from_str(text).map_err(|e| format!("not a JSON array of ShareGPT records ({e})"))?;
    let (mut chats, mut answers) = (Vec::new(), Vec::new());
    let from = |t: &Value, who: &[&str]| t.get("from").and_then(Value::as_str).is_some_and(|f| who.contains(&f));
    for (i, r) in records.iter().enumerate() {
        let turns = r.get("conversations").or_else(|| r.get("conversation")).and_then(Value::as_array).ok_or(format!("record {}: no \"conversations\" list", i + 1))?;
        let at = turns.iter().position(|t| from(t, &["human", "user"]) && t.get("value").and_then(Value::as_str).is_some_and(|v| !v.trim().is_empty()));
        let human = at
            .and_then(|k| turns[k].get("value").and_then(Value::as_str))
            .map(str::trim)
            .ok_or(format!("record {}: no human turn (\"from\": \"human\" with a \"value\")", i + 1))?;
        let answer = at
            .and_then(|k| turns[k + 1..].iter().find(|t| from(t, &["gpt", "assistant", "chatgpt", "bard"])))
            .and_then(|t| t.get("value").and_then(Value::as_str))
            .unwrap_or_default();
        chats.push(vec![Message::user(human.to_string())]);
        answers.push(answer.to_string());
    }
    Ok((chats, answers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str, w: Workload) -> Parsed {
        parse("f", text.as_bytes(), w).unwrap()
    }

    fn why(text: &[u8], w: Workload) -> String {
        parse("in.txt", text, w).unwrap_err().to_string()
    }

    #[test]
    fn documents_in_each_format() {
        let docs = ok("[DOC]\nfirst doc\n[DOC]\nsecond doc\n", Workload::Batch);
        assert_eq!((docs.format, docs.documents.clone()), ("[DOC] documents", vec!["first doc".to_string(), "second doc".to_string()]));
        let jsonl = ok("{\"text\": \"a\"}\n\n{\"document\": \"b\", \"id\": 2}\n", Workload::Batch);
        assert_eq!((jsonl.format, jsonl.documents), ("JSONL documents", vec!["a".to_string(), "b".to_string()]));
        assert_eq!(ok("just one text", Workload::Batch).documents, ["just one text"]);
    }

    #[test]
    fn prompts_in_each_format() {
        let lines = ok("# a comment\nhello\n\nhow are you\n", Workload::Chat);
        assert_eq!(lines.format, "prompt lines");
        assert_eq!(lines.chats, vec![vec![Message::user("hello".into())], vec![Message::user("how are you".into())]]);
        let jsonl = ok(r#"{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}"#, Workload::Chat);
        assert_eq!(jsonl.format, "JSONL messages");
        assert_eq!(jsonl.chats[0], vec![Message { role: "system".into(), content: "be brief".into() }, Message::user("hi".into())]);
        let share = ok(r#"[{"id": "x", "conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "first"}, {"from": "gpt", "value": "answer"}, {"from": "human", "value": "second"}]}]"#, Workload::Chat);
        assert_eq!((share.format, share.chats.clone()), ("ShareGPT", vec![vec![Message::user("first".into())]]));
        assert_eq!(share.answers, vec!["answer".to_string()], "the recorded answer after the first human turn");
    }

    #[test]
    fn bad_files_name_the_file_the_line_and_what_was_expected() {
        assert_eq!(why(b"  \n", Workload::Batch), "in.txt: empty: nothing to send");
        assert!(why(b"abc\0def", Workload::Chat).contains("binary file"));
        assert!(why(&[0x66, 0xff, 0xfe], Workload::Chat).contains("not UTF-8"));
        let bad_line = why(b"{\"text\": \"a\"}\n{\"text\": \n", Workload::Batch);
        assert!(bad_line.starts_with("in.txt: line 2: not JSON"), "{bad_line}");
        assert_eq!(why(b"{\"title\": \"a\"}", Workload::Batch), "in.txt: line 1: expected an object with a non-empty \"text\" field");
        assert_eq!(why(br#"[{"conversations": [{"from": "gpt", "value": "x"}]}]"#, Workload::Chat), "in.txt: record 1: no human turn (\"from\": \"human\" with a \"value\")");
        assert!(why(br#"{"messages": [{"role": "wizard", "content": "x"}]}"#, Workload::Chat).contains("line 1: message 1: role \"wizard\""));
        assert!(why(b"# only comments\n", Workload::Chat).contains("holds none"));
    }

    #[test]
    fn a_folder_is_one_document_per_text_file() {
        let dir = std::env::temp_dir().join(format!("caplab-folder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b.md"), "# second\ntext").unwrap();
        std::fs::write(dir.join("a.txt"), "first").unwrap();
        std::fs::write(dir.join("skip.json"), "{}").unwrap();
        let p = folder(&dir).unwrap();
        assert_eq!(p.documents, ["first", "# second\ntext"]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(folder(&dir).unwrap_err().why.contains("cannot be read"));
    }
}
