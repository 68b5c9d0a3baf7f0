//! Documents that state what the code does, checked against it: the table
//! of HubSpot-defined association types in docs/hubspot-compat.md is the
//! one `domain::builtin` serves (`UPDATE_GOLDEN=1` rewrites it), and every
//! relative link in the README and docs/ points at a file of the
//! repository.
use std::path::{Path, PathBuf};

use association_service::domain::builtin::builtin_definitions;
use association_service::domain::{ObjectType, TypeRole};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The standard object types, in id order.
fn standard_types() -> Vec<ObjectType> {
    (1..=1000)
        .filter_map(|n| ObjectType::parse(&format!("0-{n}")).ok())
        .collect()
}

/// The markdown table of every HubSpot-defined type, one row per type and
/// direction, from the first object type of each pair.
fn builtin_table() -> String {
    let types = standard_types();
    let mut table = String::from(
        "| from | to | type id | inverse id | label | v3 name |\n|---|---|---|---|---|---|\n",
    );
    for (i, a) in types.iter().enumerate() {
        for b in &types[i..] {
            let mut defs = builtin_definitions(*a, *b);
            if a != b {
                defs.extend(builtin_definitions(*b, *a));
            }
            for def in defs {
                let label = match (&def.label, def.role) {
                    (Some(label), _) => label.clone(),
                    (None, TypeRole::Unlabeled) => "(unlabeled)".into(),
                    (None, _) => String::new(),
                };
                table.push_str(&format!(
                    "| {} `{}` | {} `{}` | {} | {} | {} | `{}` |\n",
                    def.from.singular_name(),
                    def.from,
                    def.to.singular_name(),
                    def.to,
                    def.key.type_id,
                    def.inverse.type_id,
                    label,
                    def.name
                ));
            }
        }
    }
    table
}

#[test]
fn the_compat_doc_lists_the_builtin_types_the_code_serves() {
    let path = repository().join("docs/hubspot-compat.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (open, close) = ("<!-- builtin-types -->\n", "<!-- /builtin-types -->");
    let start = doc.find(open).expect("the doc marks the type table") + open.len();
    let end = doc.find(close).expect("the table is closed");
    let table = builtin_table();
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&path, format!("{}{}{}", &doc[..start], table, &doc[end..])).unwrap();
        return;
    }
    assert_eq!(
        &doc[start..end],
        table,
        "docs/hubspot-compat.md's type table differs from domain::builtin (UPDATE_GOLDEN=1 rewrites it)"
    );
    assert!(table.contains("| contact `0-1` | company `0-2` | 279 | 280 | (unlabeled) |"));
}

/// The targets of `](…)` links that are not URLs or anchors.
fn relative_links(text: &str) -> Vec<String> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            let target = &rest[..rest.find(')')?];
            let target = target.split('#').next().unwrap_or("");
            (!target.is_empty() && !target.contains("://") && !target.starts_with("mailto:"))
                .then(|| target.to_string())
        })
        .collect()
}

#[test]
fn the_readme_and_docs_link_only_to_files_of_the_repository() {
    let mut documents = vec![
        repository().join("README.md"),
        repository().join("CHANGELOG.md"),
    ];
    for entry in std::fs::read_dir(repository().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            documents.push(path);
        }
    }
    for document in documents {
        let text = std::fs::read_to_string(&document).unwrap();
        let folder = document.parent().unwrap_or(Path::new("."));
        for link in relative_links(&text) {
            let target = folder.join(&link);
            assert!(
                target.exists(),
                "{} links to {link}, which is not in the repository",
                document.display()
            );
            assert!(
                target
                    .canonicalize()
                    .unwrap()
                    .starts_with(repository().canonicalize().unwrap()),
                "{} links outside the repository: {link}",
                document.display()
            );
        }
        assert!(
            !text.contains("../shared/"),
            "{} refers to ../shared/, which a clone does not have",
            document.display()
        );
    }
}

/// CHANGELOG.md keeps Keep a Changelog's shape: an `Unreleased` section
/// first, then one `## [X.Y.Z] - YYYY-MM-DD` section per release, newest
/// first, the newest being Cargo.toml's version; only the format's kinds of
/// change as subsections, none empty.
#[test]
fn the_changelog_keeps_its_format() {
    let text = std::fs::read_to_string(repository().join("CHANGELOG.md")).unwrap();
    assert!(text.starts_with("# Changelog\n"), "the title comes first");
    let kinds = [
        "Added",
        "Changed",
        "Deprecated",
        "Removed",
        "Fixed",
        "Security",
    ];
    let mut versions = Vec::new();
    let mut open_kind: Option<(String, usize)> = None;
    let close = |open: &mut Option<(String, usize)>| {
        if let Some((kind, entries)) = open.take() {
            assert!(entries > 0, "an empty '### {kind}' section");
        }
    };
    for line in text.lines() {
        if let Some(version) = line.strip_prefix("## ") {
            close(&mut open_kind);
            versions.push(version.to_string());
        } else if let Some(kind) = line.strip_prefix("### ") {
            close(&mut open_kind);
            assert!(
                kinds.contains(&kind),
                "'### {kind}' is not one of {kinds:?}"
            );
            assert!(!versions.is_empty(), "'### {kind}' stands under a version");
            open_kind = Some((kind.to_string(), 0));
        } else if line.starts_with("- ") {
            if let Some((_, entries)) = open_kind.as_mut() {
                *entries += 1;
            }
        }
    }
    close(&mut open_kind);
    assert_eq!(
        versions.first().map(String::as_str),
        Some("[Unreleased]"),
        "Unreleased comes first"
    );
    let released: Vec<&String> = versions.iter().skip(1).collect();
    for version in &released {
        let (number, date) = version
            .split_once(" - ")
            .unwrap_or_else(|| panic!("'## {version}' has no date"));
        let number = number.trim_start_matches('[').trim_end_matches(']');
        assert_eq!(number.split('.').count(), 3, "'{number}' is X.Y.Z");
        assert!(
            number.split('.').all(|n| n.parse::<u32>().is_ok()),
            "'{number}' is X.Y.Z"
        );
        assert!(
            date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
            "'{date}' is YYYY-MM-DD"
        );
    }
    if let Some(newest) = released.first() {
        assert!(
            newest.starts_with(&format!("[{}]", env!("CARGO_PKG_VERSION"))),
            "the newest release ({newest}) is Cargo.toml's version"
        );
    }
}
