//! The two migration folders must stay in step: same versions, same names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn names(folder: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("migrations")
        .join(folder);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn sqlite_and_postgres_migrations_have_the_same_versions_and_names() {
    let sqlite = names("sqlite");
    let postgres = names("postgres");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, postgres);
    for name in &sqlite {
        let (version, rest) = name.split_once('_').expect("VERSION_name.sql");
        assert!(
            version.chars().all(|c| c.is_ascii_digit()),
            "{name}: version must be digits"
        );
        assert!(rest.ends_with(".sql"), "{name}: must end in .sql");
    }
}
