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
