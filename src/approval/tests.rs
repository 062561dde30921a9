use super::*;

#[test]
fn every_outcome_has_a_sentence_in_both_languages_and_a_stable_code() {
    let all = [
        Outcome::Approved {
            job_id: 7,
            after_window: None,
        },
        Outcome::Rejected { job_id: 7 },
        Outcome::AlreadyDecided {
            by: "Ann (telegram:1)".into(),
            choice: Choice::Approve,
            at_ms: 1_764_000_000_000,
        },
        Outcome::Expired {
            at_ms: 1_764_000_000_000,
        },
        Outcome::AlertResolved {
            at_ms: 1_764_000_000_000,
        },
        Outcome::NotAllowed,
        Outcome::NotAwaiting {
            state: "running".into(),
        },
        Outcome::UnknownJob,
    ];
    let mut codes = std::collections::BTreeSet::new();
    for o in &all {
        let en = o.sentence(Language::En);
        let zh = o.sentence(Language::ZhTw);
        assert!(en.is_ascii() && !en.is_empty(), "{o:?}: {en}");
        assert!(!zh.is_ascii(), "{o:?}: {zh}");
        assert!(codes.insert(o.code()), "{o:?}");
    }
    assert_eq!(
        all[2].sentence(Language::En),
        "Already decided: Ann (telegram:1) approved this repair at 2025-11-24T16:00:00Z."
    );
    assert_eq!(Outcome::NotAllowed.status(), 403);
    assert_eq!(
        Outcome::Approved {
            job_id: 1,
            after_window: None
        }
        .status(),
        200
    );
}

#[test]
fn a_reused_link_is_told_so_in_both_languages() {
    assert_eq!(LinkUse::AlreadyUsed.status(), 409);
    assert!(
        LinkUse::AlreadyUsed
            .sentence(Language::En)
            .contains("already used")
    );
    assert!(
        LinkUse::AlreadyUsed
            .sentence(Language::ZhTw)
            .contains("已使用過")
    );
}
