use super::*;

#[test]
fn a_notice_survives_its_cookie_in_both_languages_and_nothing_else_reads_as_one() {
    for n in [
        Notice {
            ok: true,
            text: "Approved: repair job 3 will run now.".into(),
        },
        Notice {
            ok: false,
            text: "已拒絕：你不在此修復的核准名單上；這次點擊已記錄。".into(),
        },
    ] {
        let v = n.encode();
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'%' || b == b':'),
            "{v}"
        );
        assert_eq!(Notice::decode(&v), Some(n));
    }
    assert_eq!(Notice::decode("maybe:hello"), None);
    assert_eq!(Notice::decode("no colon"), None);
}

/// A viewer for rendering without HTTP.
fn viewer(role: crate::auth::Role, apps: &[&str], lang: Lang) -> Viewer {
    Viewer {
        claims: crate::auth::Claims {
            sub: "console:alice".into(),
            role,
            apps: apps.iter().map(|a| a.to_string()).collect(),
            exp: 0,
            iat: 0,
            nbf: None,
        },
        name: "alice".into(),
        csrf: "csrf-token".into(),
        lang,
        path: "/ui/inbox".into(),
        session: String::new(),
    }
}

fn rendered(view: &InboxView, v: &Viewer) -> String {
    let mut settings = crate::config::Settings::default();
    settings.ui.enabled = true;
    let c = super::super::Console::from_settings(&settings).unwrap();
    let tmpl = c.env().get_template("inbox.html").unwrap();
    let ctx = minijinja::context! {
        lang => v.lang.code(),
        langs => Vec::<String>::new(),
        user => minijinja::context! { name => &v.name, role => v.claims.role.as_str() },
        csrf => &v.csrf,
        path => &v.path,
        ..minijinja::Value::from(minijinja::value::Serde(view))
    };
    tmpl.render(ctx).unwrap_or_else(|e| panic!("{e:#}"))
}

fn empty(can_write: bool) -> InboxView {
    InboxView {
        notice: None,
        can_write,
        apps: Some(vec!["prod".into()]),
        waiting: Vec::new(),
        windows: Vec::new(),
        holds: Vec::new(),
        form: MaintenanceForm::default(),
    }
}

#[test]
fn an_empty_inbox_renders_in_both_languages_with_the_form_for_writers_only() {
    for lang in Lang::ALL {
        let editor = rendered(
            &empty(true),
            &viewer(crate::auth::Role::Editor, &["prod"], lang),
        );
        assert!(editor.contains("id=\"maintenance-form\""), "{editor}");
        let viewer_page = rendered(
            &empty(false),
            &viewer(crate::auth::Role::Viewer, &["prod"], lang),
        );
        assert!(!viewer_page.contains("id=\"maintenance-form\""));
    }
}
