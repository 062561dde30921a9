//! Where each node of a spec's text is, and how to take one entry out of the text.
//!
//! serde stops at the first error, and serde_norway gives no position for a node that parsed
//! fine (a failed check is found after parsing). So the text is also read with granit-parser
//! (already in the tree through kube's kubeconfig parsing), an event parser that gives every
//! node its span, into a small tree of keys and spans: enough to point at any field path, and to
//! blank one entry out of the text so that serde can be run again to find the next problem.
//!
//! Blanking replaces every character of the entry except line breaks with a space, so the lines
//! and columns of everything else stay what they were; in flow style (JSON) the entry's comma
//! goes with it. An entry whose collection would be left empty takes its parent entry with it
//! instead: an empty block collection reads as null, which would be a new, invented problem.

use granit_parser::{Event, Parser, Span, StructureStyle};

/// A position people read: 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

type NodeId = usize;

struct Node {
    /// Character index of the node's first character (its tag, if it has one).
    start: usize,
    position: Position,
    /// Character index just past the node.
    end: usize,
    flow: bool,
    kind: Kind,
    /// The entry holding this node as its value: (collection, index among its children).
    parent: Option<(NodeId, usize)>,
}

enum Kind {
    Scalar(String),
    Seq(Vec<Child>),
    Map(Vec<Child>),
}

struct Child {
    key: Option<NodeId>,
    value: NodeId,
    removed: bool,
}

/// Which part of a map entry a position is wanted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The key (an unknown or badly named key).
    Key,
    /// The value (anything else).
    Value,
}

/// A spec's text with the tree of its nodes.
pub struct Source {
    chars: Vec<char>,
    nodes: Vec<Node>,
    root: NodeId,
}

/// An entry of a collection: the collection and the child's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    collection: NodeId,
    index: usize,
}

impl Source {
    /// Reads `text`; `None` when the event parser cannot (serde_norway reports the syntax
    /// error), or the text holds more than one document.
    pub fn read(text: &str) -> Option<Source> {
        let mut nodes: Vec<Node> = Vec::new();
        let mut open: Vec<(NodeId, Option<NodeId>)> = Vec::new();
        let mut root = None;
        for next in Parser::new_from_str(text) {
            let (event, span) = next.ok()?;
            let (kind, flow, opens) = match event {
                Event::Scalar(value, ..) => (Kind::Scalar(value.into_owned()), false, false),
                Event::Alias(_) => (Kind::Scalar(String::new()), false, false),
                Event::SequenceStart(style, ..) => {
                    (Kind::Seq(Vec::new()), style == StructureStyle::Flow, true)
                }
                Event::MappingStart(style, ..) => {
                    (Kind::Map(Vec::new()), style == StructureStyle::Flow, true)
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let (id, _) = open.pop()?;
                    nodes[id].end = span.end.index().max(nodes[id].end);
                    continue;
                }
                Event::DocumentStart(..) if root.is_some() => return None,
                _ => continue,
            };
            let id = nodes.len();
            let start = start_of(&span);
            nodes.push(Node {
                start: start.index(),
                position: Position {
                    line: start.line(),
                    column: start.col() + 1,
                },
                end: span.end.index(),
                flow,
                kind,
                parent: None,
            });
            match open.last_mut() {
                None => root = Some(id),
                Some((parent, pending_key)) => {
                    let parent = *parent;
                    let child = match &nodes[parent].kind {
                        Kind::Seq(_) => Some(Child {
                            key: None,
                            value: id,
                            removed: false,
                        }),
                        Kind::Map(_) => match pending_key.take() {
                            None => {
                                *pending_key = Some(id);
                                None
                            }
                            Some(key) => Some(Child {
                                key: Some(key),
                                value: id,
                                removed: false,
                            }),
                        },
                        Kind::Scalar(_) => return None,
                    };
                    if let Some(child) = child {
                        let index = match &mut nodes[parent].kind {
                            Kind::Seq(children) | Kind::Map(children) => {
                                children.push(child);
                                children.len() - 1
                            }
                            Kind::Scalar(_) => return None,
                        };
                        nodes[id].parent = Some((parent, index));
                    }
                }
            }
            if opens {
                open.push((id, None));
            }
        }
        Some(Source {
            chars: text.chars().collect(),
            nodes,
            root: root?,
        })
    }

    /// The text as it now is, entries blanked.
    pub fn text(&self) -> String {
        self.chars.iter().collect()
    }

    /// Whether the document is a mapping.
    pub fn is_mapping(&self) -> bool {
        matches!(self.nodes[self.root].kind, Kind::Map(_))
    }

    /// Whether the document is a mapping in flow style (`{…}`, JSON).
    fn root_is_flow_map(&self) -> bool {
        let root = &self.nodes[self.root];
        root.flow && matches!(root.kind, Kind::Map(_))
    }

    /// Where the document starts.
    pub fn start(&self) -> Position {
        self.nodes[self.root].position
    }

    /// Whether the document's mapping holds `key` (not blanked).
    pub fn root_has(&self, key: &str) -> bool {
        self.child_by_key(self.root, key, false).is_some()
    }

    /// The entry a field path names (`ingress.class`, `addons[1]`, `env.MY-VAR`,
    /// `monitoring.labels.app.kubernetes.io/name`), counting only entries not blanked, as serde
    /// saw the text. Keys may hold dots: the longest key that fits is taken.
    pub fn entry(&self, path: &str) -> Option<Entry> {
        let mut at = self.root;
        let mut rest = path.strip_prefix('.').unwrap_or(path);
        let mut found = None;
        while !rest.is_empty() {
            let (entry, after) = match &self.nodes[at].kind {
                Kind::Seq(children) => {
                    let inner = rest.strip_prefix('[')?;
                    let close = inner.find(']')?;
                    let n: usize = inner[..close].parse().ok()?;
                    let index = children
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| !c.removed)
                        .nth(n)?
                        .0;
                    (index, &inner[close + 1..])
                }
                Kind::Map(children) => {
                    let mut best: Option<(usize, usize)> = None;
                    for (i, c) in children.iter().enumerate().filter(|(_, c)| !c.removed) {
                        let Some(Kind::Scalar(key)) = c.key.map(|k| &self.nodes[k].kind) else {
                            continue;
                        };
                        let fits = rest.strip_prefix(key.as_str()).is_some_and(|after| {
                            after.is_empty() || after.starts_with('.') || after.starts_with('[')
                        });
                        if fits && best.is_none_or(|(_, len)| key.len() > len) {
                            best = Some((i, key.len()));
                        }
                    }
                    let (index, len) = best?;
                    (index, &rest[len..])
                }
                Kind::Scalar(_) => return None,
            };
            found = Some(Entry {
                collection: at,
                index: entry,
            });
            at = self.child(found?).value;
            rest = after.strip_prefix('.').unwrap_or(after);
        }
        found
    }

    /// The entry of the mapping at `path` whose key is `key`; the last one when `last` (a
    /// duplicate key is the later one).
    pub fn entry_with_key(&self, path: &str, key: &str, last: bool) -> Option<Entry> {
        let map = match self.entry(path) {
            Some(e) => self.child(e).value,
            None if path.is_empty() || path == "." => self.root,
            None => return None,
        };
        self.child_by_key(map, key, last).map(|index| Entry {
            collection: map,
            index,
        })
    }

    fn child_by_key(&self, map: NodeId, key: &str, last: bool) -> Option<usize> {
        let Kind::Map(children) = &self.nodes[map].kind else {
            return None;
        };
        let mut matching = children.iter().enumerate().filter(|(_, c)| {
            !c.removed
                && c.key
                    .is_some_and(|k| matches!(&self.nodes[k].kind, Kind::Scalar(s) if s == key))
        });
        if last {
            matching.next_back().map(|(i, _)| i)
        } else {
            matching.next().map(|(i, _)| i)
        }
    }

    fn child(&self, e: Entry) -> &Child {
        match &self.nodes[e.collection].kind {
            Kind::Seq(c) | Kind::Map(c) => &c[e.index],
            Kind::Scalar(_) => unreachable!("entries are in collections"),
        }
    }

    /// An entry's field path as the text is written: list positions count blanked items too,
    /// where serde, reading the blanked text, counts only the others.
    pub fn path_of(&self, e: Entry) -> String {
        let mut parts = Vec::new();
        let mut at = Some(e);
        while let Some(e) = at {
            parts.push(match self.child(e).key.map(|k| &self.nodes[k].kind) {
                Some(Kind::Scalar(key)) => format!(".{key}"),
                Some(_) => ".?".to_string(),
                None => format!("[{}]", e.index),
            });
            at = self.nodes[e.collection]
                .parent
                .map(|(collection, index)| Entry { collection, index });
        }
        parts.reverse();
        let path = parts.concat();
        path.strip_prefix('.')
            .map_or_else(|| path.clone(), str::to_string)
    }

    /// Where an entry's key (a sequence item has none: its value) or value starts.
    pub fn position(&self, e: Entry, part: Part) -> Position {
        let c = self.child(e);
        let node = match (part, c.key) {
            (Part::Key, Some(k)) => k,
            _ => c.value,
        };
        self.nodes[node].position
    }

    /// Blanks an entry out of the text; when it is the last one left in its collection, the
    /// collection's own entry goes instead. `false` when that would empty the document.
    pub fn remove(&mut self, e: Entry) -> bool {
        let remaining = match &self.nodes[e.collection].kind {
            Kind::Seq(c) | Kind::Map(c) => c.iter().filter(|c| !c.removed).count(),
            Kind::Scalar(_) => 0,
        };
        if remaining <= 1 {
            return match self.nodes[e.collection].parent {
                Some((collection, index)) => self.remove(Entry { collection, index }),
                None => false,
            };
        }
        let (from, to) = self.extent(e);
        if from >= to {
            // Spans that do not cover the entry: nothing sensible to blank.
            return false;
        }
        for c in &mut self.chars[from..to] {
            if *c != '\n' && *c != '\r' {
                *c = ' ';
            }
        }
        if let Kind::Seq(c) | Kind::Map(c) = &mut self.nodes[e.collection].kind {
            c[e.index].removed = true;
        }
        true
    }

    /// The characters an entry occupies in the current text.
    fn extent(&self, e: Entry) -> (usize, usize) {
        let c = self.child(e);
        let value = &self.nodes[c.value];
        let len = self.chars.len();
        let mut from = c.key.map_or(value.start, |k| self.nodes[k].start).min(len);
        let mut to = value.end.min(len);
        let is_space = |ch: char| ch == ' ' || ch == '\t';
        if self.nodes[e.collection].flow {
            // Its comma: the one after it, else the one before it (no comma may dangle).
            let mut after = to;
            while after < self.chars.len() && self.chars[after].is_whitespace() {
                after += 1;
            }
            if self.chars.get(after) == Some(&',') {
                to = after + 1;
            } else {
                let mut before = from;
                while before > 0 && self.chars[before - 1].is_whitespace() {
                    before -= 1;
                }
                if before > 0 && self.chars[before - 1] == ',' {
                    from = before - 1;
                }
            }
        } else {
            if c.key.is_none() {
                // A block sequence item starts at its dash.
                let mut before = from;
                while before > 0 && is_space(self.chars[before - 1]) {
                    before -= 1;
                }
                if before > 0 && self.chars[before - 1] == '-' {
                    from = before - 1;
                }
            }
            // A block entry owns the rest of its first line (the `:` of an empty value, a
            // trailing comment).
            let eol = self.chars[from..]
                .iter()
                .position(|&ch| ch == '\n')
                .map_or(self.chars.len(), |i| from + i);
            to = to.max(eol);
        }
        (from, to)
    }

    /// The text with `entries` (`key: value` pairs of YAML scalars written as JSON strings)
    /// added to the document's mapping: after the last line in block style, before the closing
    /// brace in flow style. Nodes are not looked up after this, so positions may move.
    pub fn text_with(&self, entries: &[(&str, &str)]) -> Option<String> {
        if entries.is_empty() {
            return Some(self.text());
        }
        let pairs: Vec<String> = entries
            .iter()
            .map(|(k, v)| format!("{}: {}", json_string(k), json_string(v)))
            .collect();
        if self.root_is_flow_map() {
            let close = self.nodes[self.root].end.checked_sub(1)?;
            if self.chars.get(close) != Some(&'}') {
                return None;
            }
            let empty = self
                .chars
                .get(self.nodes[self.root].start + 1..close)?
                .iter()
                .all(|c| c.is_whitespace());
            let sep = if empty { "" } else { ", " };
            let head: String = self.chars[..close].iter().collect();
            let tail: String = self.chars[close..].iter().collect();
            Some(format!("{head}{sep}{}{tail}", pairs.join(", ")))
        } else {
            let mut text = self.text();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            for p in pairs {
                text.push_str(&p);
                text.push('\n');
            }
            Some(text)
        }
    }
}

/// Where a node starts: its tag when it has one (`!!str 8080`), else its content.
fn start_of(span: &Span) -> granit_parser::Marker {
    span.tag_start
        .filter(|t| t.index() < span.start.index())
        .unwrap_or(span.start)
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(s: &Source, path: &str, part: Part) -> (usize, usize) {
        let p = s.position(s.entry(path).unwrap_or_else(|| panic!("{path}")), part);
        (p.line, p.column)
    }

    #[test]
    fn every_field_path_has_the_position_of_its_key_and_value() {
        let text = "name: shop\ningress:\n  class: nginx\naddons:\n  - redis\n  - postgresql\n\
                    monitoring:\n  labels: {app.kubernetes.io/name: x, team: y}\n";
        let s = Source::read(text).unwrap();
        assert_eq!(pos(&s, "name", Part::Value), (1, 7));
        assert_eq!(pos(&s, "ingress.class", Part::Key), (3, 3));
        assert_eq!(pos(&s, "ingress.class", Part::Value), (3, 10));
        assert_eq!(pos(&s, "addons[1]", Part::Value), (6, 5));
        assert_eq!(
            pos(&s, "monitoring.labels.app.kubernetes.io/name", Part::Key),
            (8, 12)
        );
        assert_eq!(pos(&s, "monitoring.labels.team", Part::Value), (8, 45));
        assert!(s.entry("ingress.issuer").is_none());
    }

    #[test]
    fn a_blanked_entry_keeps_every_other_position_and_shifts_sequence_indices() {
        let text = "addons:\n  - mongo\n  - redis\nname: shop\n";
        let mut s = Source::read(text).unwrap();
        assert!(s.remove(s.entry("addons[0]").unwrap()));
        assert_eq!(s.text(), "addons:\n         \n  - redis\nname: shop\n");
        // serde now sees redis first; the path it gives maps back to the original item.
        assert_eq!(pos(&s, "addons[0]", Part::Value), (3, 5));
        assert_eq!(s.path_of(s.entry("addons[0]").unwrap()), "addons[1]");
        // The last item takes its parent with it: `addons:` alone would be null.
        assert!(s.remove(s.entry("addons[0]").unwrap()));
        assert_eq!(s.text().trim(), "name: shop");
        let v: serde_yaml::Value = serde_yaml::from_str(&s.text()).unwrap();
        assert_eq!(v["name"], "shop");
    }

    #[test]
    fn json_entries_are_blanked_with_their_commas_and_entries_added_before_the_brace() {
        let text = r#"{"a": 1, "b": [1, 2], "c": {"d": true}}"#;
        let mut s = Source::read(text).unwrap();
        assert_eq!(pos(&s, "c.d", Part::Value), (1, 34));
        assert!(s.remove(s.entry("b").unwrap()));
        assert!(s.remove(s.entry("c").unwrap()));
        let v: serde_json::Value = serde_json::from_str(&s.text()).unwrap();
        assert_eq!(v, serde_json::json!({"a": 1}));
        let with = s.text_with(&[("name", "x")]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&with).unwrap();
        assert_eq!(v, serde_json::json!({"a": 1, "name": "x"}));
        assert!(!s.remove(s.entry("a").unwrap()), "the document cannot go");
    }

    #[test]
    fn block_entries_are_added_after_the_last_line() {
        let s = Source::read("a: 1").unwrap();
        assert!(s.root_has("a") && !s.root_has("name"));
        assert_eq!(
            s.text_with(&[("name", "x")]).unwrap(),
            "a: 1\n\"name\": \"x\"\n"
        );
    }
}
