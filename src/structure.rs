//! The structure map, checked: the crate's rooms in floors, lowest first. A room may use only
//! the rooms below it, so no arrow runs back up and no two rooms use each other. `main.rs`
//! and `lib.rs` stand above them all; a room's unit tests (from its `#[cfg(test)]` on, or in
//! its `tests.rs`) may reach higher, for fixtures.

/// Every room, lowest first, with its one job.
pub const FLOORS: &[(&str, &str)] = &[
    (
        "domain",
        "ids, money, statuses, flags and `decide`: the pure rules, no I/O",
    ),
    ("text", "untrusted text cleaned, escaped and neutralised"),
    (
        "outbound",
        "the one shape of an outbound HTTP client: no redirects, bounded reads",
    ),
    ("settings", "the typed settings tree, its loader and bounds"),
    ("telemetry", "the tracing subscriber"),
    (
        "callbacks",
        "a Result-URL callback's fields, signature and claim: pure",
    ),
    (
        "capacity",
        "the capacity planner: `decide` on a simulated day",
    ),
    (
        "provider",
        "the Freedom Pay client: signer, request, parser",
    ),
    ("store", "every SQL statement"),
    (
        "intake",
        "every way a payment enters: one id rule, one timestamp grammar",
    ),
    ("reporting", "finance reports in every format"),
    (
        "archive",
        "a closed month of history as a .tar.gz, written and read back",
    ),
    ("webhook", "the outbox's delivery"),
    (
        "maintenance",
        "partitions ahead, event retention, the rollup's zone",
    ),
    ("engine", "one sweep: claim, pace, poll, decide, record"),
    (
        "http",
        "every listener: limits, health and metrics, the callbacks endpoint",
    ),
    (
        "startup",
        "one wiring of pool, engine, listeners and supervisor",
    ),
    ("simulator", "a local stand-in for the provider"),
    ("benchmark", "the measurements behind `bench`"),
    ("commands", "one function per command"),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::FLOORS;

    fn floor(room: &str) -> Option<usize> {
        FLOORS.iter().position(|(name, _)| *name == room)
    }

    /// The rooms a file's code names as `crate::room`, comments and unit tests left out.
    fn rooms_used(source: &str) -> BTreeSet<String> {
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        let mut used = BTreeSet::new();
        for line in code.lines() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for (i, _) in line.match_indices("crate::") {
                if line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                    continue; // `freedompay_recon_crate::`, say
                }
                let name: String = line[i + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                used.insert(name);
            }
        }
        used
    }

    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_room_uses_only_the_rooms_below_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        let mut up = Vec::new();
        let mut rooms = BTreeSet::new();
        for path in all {
            let relative = path.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap().as_os_str();
            let room = first.to_string_lossy().trim_end_matches(".rs").to_owned();
            // A room's unit tests in a file of their own (`#[cfg(test)] mod tests;`).
            if ["lib", "main", "structure"].contains(&room.as_str())
                || path.file_name().is_some_and(|name| name == "tests.rs")
            {
                continue;
            }
            let own = floor(&room)
                .unwrap_or_else(|| panic!("{}: room {room} is not in FLOORS", relative.display()));
            rooms.insert(room.clone());
            for used in rooms_used(&std::fs::read_to_string(&path).unwrap()) {
                if used == room {
                    continue;
                }
                let theirs = floor(&used).unwrap_or_else(|| {
                    panic!(
                        "{}: crate::{used} is not a room in FLOORS",
                        relative.display()
                    )
                });
                if theirs > own {
                    up.push(format!("{}: {room} uses {used}", relative.display()));
                }
            }
        }
        assert!(up.is_empty(), "arrows running back up:\n{}", up.join("\n"));
        // Every room in FLOORS exists: the map is the tree.
        let named: BTreeSet<String> = FLOORS.iter().map(|(n, _)| (*n).to_owned()).collect();
        assert_eq!(rooms, named);
    }

    /// The command line's framework stays at the edge: clap only in `commands` and `main.rs`.
    #[test]
    fn clap_is_only_in_commands() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        // This file names it only to look for it.
        let edge = [
            src.join("commands"),
            src.join("main.rs"),
            src.join("structure.rs"),
        ];
        let outside: Vec<String> = all
            .iter()
            .filter(|path| !edge.iter().any(|e| path.starts_with(e)))
            .filter(|path| {
                let source = std::fs::read_to_string(path).unwrap();
                source.lines().any(|line| {
                    let line = line.trim_start();
                    !line.starts_with("//") && line.contains("clap::")
                })
            })
            .map(|path| path.strip_prefix(&src).unwrap().display().to_string())
            .collect();
        assert!(outside.is_empty(), "clap outside commands: {outside:?}");
    }

    #[test]
    fn the_scan_sees_a_use_and_skips_comments_and_tests() {
        let used = rooms_used(
            "use crate::store::x;\n// crate::engine\nfn f() { crate::domain::g() }\n\
             #[cfg(test)]\nmod tests { use crate::simulator; }",
        );
        assert_eq!(
            used.into_iter().collect::<Vec<_>>(),
            ["domain".to_owned(), "store".to_owned()]
        );
    }

    /// lib.rs's map names every room.
    #[test]
    fn the_crate_map_names_every_room() {
        let lib = include_str!("lib.rs");
        for (room, _) in FLOORS {
            assert!(
                lib.contains(&format!("[`{room}`]")),
                "lib.rs does not describe {room}"
            );
        }
    }
}
