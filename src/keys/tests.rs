//! Unit tests of the keys file parser and the scope rules (src/keys.rs).

use super::*;

const GOOD: &str = r#"
[[keys]]
access_key = "reader"
secret_key = "reader-secret-1"
access = "read-only"
buckets = ["logs", "team-*"]

[[keys]]
access_key = "writer.1"
secret_key = "writer/secret+2"
access = "read-write"
"#;

#[test]
fn parses_entries_and_scopes() {
    let keys = parse_keys_file(GOOD.as_bytes()).unwrap();
    assert_eq!(keys.len(), 2);
    let r = &keys[0];
    assert_eq!(r.access, Access::ReadOnly);
    assert_eq!(
        r.buckets,
        Some(vec![
            BucketPattern::Exact("logs".into()),
            BucketPattern::Prefix("team-".into())
        ])
    );
    assert!(r.can_read("logs") && r.can_read("team-a") && r.can_read("team-"));
    assert!(!r.can_read("logs2") && !r.can_read("team") && !r.can_read("other"));
    assert!(!r.can_write("logs") && !r.can_write("team-a"));
    let w = &keys[1];
    assert!(w.is_unrestricted() && w.can_write("anything"));
    assert!(parse_keys_file(b"").unwrap().is_empty());
}

#[test]
fn star_is_every_bucket() {
    let k = parse_keys_file(
        b"[[keys]]\naccess_key='abc'\nsecret_key='12345678'\naccess='read-only'\nbuckets=['x','*']\n",
    )
    .unwrap();
    assert_eq!(k[0].buckets, None);
    assert!(k[0].can_read("zzz") && !k[0].can_write("zzz"));
}

#[test]
fn table_refuses_duplicates_including_the_root() {
    let keys = parse_keys_file(GOOD.as_bytes()).unwrap();
    let t = KeyTable::new(Key::root("root", "rootsecret"), keys.clone()).unwrap();
    assert_eq!(t.keys().len(), 3);
    assert!(t.get("root").unwrap().is_unrestricted());
    assert_eq!(t.get("reader").unwrap().access, Access::ReadOnly);
    assert!(t.get("nobody").is_none());
    let e = KeyTable::new(Key::root("reader", "rootsecret"), keys).unwrap_err();
    assert!(e.contains("`reader` is given twice"), "{e}");
}

fn err(text: &str) -> String {
    parse_keys_file(text.as_bytes()).unwrap_err()
}

#[test]
fn bad_entries_are_named() {
    let base = "[[keys]]\naccess_key='abc'\nsecret_key='12345678'\naccess='read-only'\n";
    assert!(err("x = 1\n").contains("unknown key `x`"));
    assert!(err("keys = 1\n").contains("array of [[keys]]"));
    assert!(err("keys = [1]\n").contains("keys[0]: each entry must be a table"));
    assert!(err(&format!("{base}extra=1\n")).contains("keys[0]: unknown field `extra`"));
    assert!(err("[[keys]]\nsecret_key='12345678'\naccess='read-only'\n")
        .contains("`access_key` is missing"));
    assert!(err("[[keys]]\naccess_key=1\n").contains("`access_key` must be a string"));
    assert!(err(&base.replace("'abc'", "'ab'")).contains("3..=128"));
    assert!(err(&base.replace("'abc'", "'a/b'")).contains("A-Z a-z 0-9"));
    assert!(err(&base.replace("'12345678'", "'1234567'")).contains("8..=128"));
    assert!(err(&base.replace("'12345678'", "'1234 5678'")).contains("without spaces"));
    assert!(err(&base.replace("read-only", "admin")).contains("\"admin\" is not"));
    assert!(err(&format!("{base}buckets=[]\n")).contains("empty"));
    assert!(err(&format!("{base}buckets='x'\n")).contains("array of strings"));
    assert!(err(&format!("{base}buckets=[1]\n")).contains("array of strings"));
    for bad in ["'Up'", "'a*b'", "'a**'", "''", "'a b'", "'../x'"] {
        let e = err(&format!("{base}buckets=[{bad}]\n"));
        assert!(e.contains("bucket pattern"), "{bad}: {e}");
    }
    let second = format!(
        "{base}{}",
        base.replace("'abc'", "'abd'").replace("read-only", "rw")
    );
    assert!(
        err(&second).starts_with("keys[1]: `abd`"),
        "{}",
        err(&second)
    );
}

#[test]
fn limits_are_enforced() {
    let one = "[[keys]]\naccess_key='k{}'\nsecret_key='12345678'\naccess='read-only'\n";
    let many: String = (0..=MAX_KEYS)
        .map(|i| one.replace("{}", &format!("{i:04}")))
        .collect();
    assert!(err(&many).contains("at most 1000"));
    let exactly: String = (0..MAX_KEYS)
        .map(|i| one.replace("{}", &format!("{i:04}")))
        .collect();
    assert_eq!(parse_keys_file(exactly.as_bytes()).unwrap().len(), MAX_KEYS);
    let pats: Vec<String> = (0..=MAX_BUCKET_PATTERNS)
        .map(|i| format!("'b{i}'"))
        .collect();
    let e = err(&format!(
        "{}buckets=[{}]\n",
        one.replace("{}", "xyz"),
        pats.join(",")
    ));
    assert!(e.contains("at most 100"), "{e}");
    let big = vec![b'#'; MAX_KEYS_FILE_BYTES as usize + 1];
    assert!(parse_keys_file(&big).unwrap_err().contains("larger than"));
}

/// Hostile bytes: never a panic, always a one-line error or a valid table.
#[test]
fn hostile_inputs_do_not_panic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"[]{}=\"'.,*#\n keysaccess_r-w123\\\xff\x00";
    for _ in 0..5000 {
        let len = (next() % 200) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        if let Err(e) = parse_keys_file(&bytes) {
            assert!(!e.contains('\n'), "{e}");
        }
    }
    // Values and names echoed in errors stay on one line (a fuzz finding).
    for bad in [
        "[[keys]]\naccess_key='abc'\nsecret_key='12345678'\naccess=\"read-\\nonly\"\n",
        "[[keys]]\n\"a\\nb\" = 1\n",
        "\"x\\ny\" = 1\n",
    ] {
        let e = parse_keys_file(bad.as_bytes()).unwrap_err();
        assert!(!e.contains('\n'), "{e}");
    }
    // Mutations of a valid file.
    for i in 0..GOOD.len() {
        let mut b = GOOD.as_bytes().to_vec();
        b[i] = b"]\"'=*\x00\xff"[i % 7];
        let _ = parse_keys_file(&b);
        let _ = parse_keys_file(&GOOD.as_bytes()[..i]);
    }
}

#[test]
fn per_core_copy_follows_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    std::fs::write(&path, GOOD).unwrap();
    let n = init(
        Key::root("rootkey", "rootsecret"),
        Some(Source::KeysFile(path.clone())),
    )
    .unwrap();
    assert_eq!(n, 3);
    assert_eq!(secret_of("reader").as_deref(), Some("reader-secret-1"));
    assert!(with_key("rootkey", |k| k.unwrap().key.is_unrestricted()));
    let sk1 = with_key("reader", |k| {
        k.unwrap().signing_key("20130524", "us-east-1", "s3")
    });
    assert_eq!(
        sk1,
        sigv4::signing_key("reader-secret-1", "20130524", "us-east-1", "s3")
    );
    // A new file: the new key works, the removed one is gone.
    std::fs::write(&path, GOOD.replace("reader", "reader2")).unwrap();
    assert_eq!(reload().unwrap(), 3);
    assert!(secret_of("reader").is_none());
    assert!(secret_of("reader2").is_some());
    // A bad file keeps the keys in force.
    std::fs::write(&path, "[[keys]]\naccess_key = 1\n").unwrap();
    assert!(reload().unwrap_err().contains("keys[0]"));
    assert!(secret_of("reader2").is_some());
    std::fs::remove_file(&path).unwrap();
    assert!(reload().unwrap_err().contains("cannot open"));
    assert!(secret_of("reader2").is_some() && secret_of("rootkey").is_some());
}
