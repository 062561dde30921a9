//! Routing: which channels get an event.
//!
//! Two sources, joined without duplicates, in order:
//! - names given explicitly (a rule chain's `notify: NAME`, a playbook's `notify(NAME, …)`):
//!   a channel, or a named route's channels whatever its matchers; `default` adds nothing;
//! - label routes (`notify.routes`), Alertmanager style: tried in order against the alert's
//!   labels with the same matchers rules use ([`crate::rules::Matcher`]); the first matching
//!   route that takes the event wins unless it says `continue: true`. A route that does not
//!   take the event (its `events` list; `alert_fired` and `no_action` are opt-in) is skipped,
//!   not a match.

use std::collections::BTreeSet;

use super::EventKind;
use super::config::{DEFAULT_ROUTE, NotifySettings, Route};
use crate::rules::Labels;

/// The routes and the channel names.
#[derive(Clone, Debug)]
pub struct Router {
    routes: Vec<Route>,
    channels: BTreeSet<String>,
}

impl Router {
    /// From resolved settings.
    pub fn new(settings: &NotifySettings) -> Router {
        Router {
            routes: settings.routes.clone(),
            channels: settings.channels.keys().cloned().collect(),
        }
    }

    /// Whether any channel exists.
    pub fn has_channels(&self) -> bool {
        !self.channels.is_empty()
    }

    /// Whether `name` is a channel, a named route, or `default`.
    pub fn knows(&self, name: &str) -> bool {
        name == DEFAULT_ROUTE
            || self.channels.contains(name)
            || self.routes.iter().any(|r| r.name.as_deref() == Some(name))
    }

    /// Whether any label route takes events of this kind (whatever the labels).
    pub fn any_route_takes(&self, kind: EventKind) -> bool {
        self.routes.iter().any(|r| r.takes(kind))
    }

    /// The channels for an event with these labels and explicit names.
    pub fn channels_for(
        &self,
        kind: EventKind,
        labels: &Labels,
        explicit: &[String],
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |c: &String| {
            if !out.contains(c) {
                out.push(c.clone());
            }
        };
        for name in explicit {
            if self.channels.contains(name) {
                add(name);
            } else if let Some(r) = self.routes.iter().find(|r| r.name.as_deref() == Some(name)) {
                r.channels.iter().for_each(&mut add);
            } else if name != DEFAULT_ROUTE {
                tracing::warn!(name = %name, "notify target is neither a channel nor a route; ignored");
            }
        }
        for r in &self.routes {
            if !r.takes(kind) || !r.matchers.iter().all(|m| m.matches(labels)) {
                continue;
            }
            r.channels.iter().for_each(&mut add);
            if !r.continue_matching {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> NotifySettings {
        let mut s: NotifySettings = serde_yaml::from_str(yaml).unwrap();
        s.resolve(&|_| None).unwrap();
        s
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const YAML: &str = r#"
channels:
  tg: {type: telegram, bot_token: t, chat_id: "1"}
  line: {type: line, channel_token: t, to: U1}
  slack: {type: slack, webhook_url: "http://127.0.0.1:1/hook"}
routes:
  - matchers: ['severity="critical"']
    channels: [tg]
    continue: true
  - name: web-team
    matchers: ['app=~"web.*"']
    channels: [slack]
  - matchers: []
    channels: [line]
    events: [alert_fired, escalation]
"#;

    #[test]
    fn the_first_match_wins_unless_it_continues() {
        let r = Router::new(&settings(YAML));
        let l = labels(&[("severity", "critical"), ("app", "web-1")]);
        assert_eq!(
            r.channels_for(EventKind::Escalation, &l, &[]),
            ["tg", "slack"]
        );
        let l = labels(&[("severity", "warning"), ("app", "db")]);
        assert_eq!(r.channels_for(EventKind::Escalation, &l, &[]), ["line"]);
    }

    #[test]
    fn alert_fired_goes_only_to_routes_that_opt_in() {
        let r = Router::new(&settings(YAML));
        let l = labels(&[("severity", "critical"), ("app", "web-1")]);
        assert_eq!(r.channels_for(EventKind::AlertFired, &l, &[]), ["line"]);
    }

    #[test]
    fn explicit_names_add_channels_and_named_routes_and_default_adds_none() {
        let r = Router::new(&settings(YAML));
        let l = labels(&[("app", "db")]);
        let explicit = vec![
            "web-team".to_string(),
            "tg".to_string(),
            "default".to_string(),
        ];
        assert_eq!(
            r.channels_for(EventKind::StormBrake, &l, &explicit),
            ["slack", "tg"]
        );
        assert!(r.knows("default") && r.knows("web-team") && r.knows("tg"));
        assert!(!r.knows("oncall"));
    }
}
