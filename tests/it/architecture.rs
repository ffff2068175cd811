//! The shape of the source, checked: modules import each other without cycles, the ground
//! floor imports no stage, the pipeline talks to Kafka and the database only through `bus` and
//! `store`, and no file grows into a drawer of unrelated things.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The shared vocabulary and the places data rests: none of them may import a stage.
const GROUND_FLOOR: [&str; 7] = [
    "job", "options", "settings", "secret", "backoff", "store", "bus",
];
/// The stages and what sits on them.
const STAGES: [&str; 8] = [
    "intake", "convert", "lookup", "merge", "pipeline", "http", "watch", "metrics",
];
/// Files allowed past the size limit: one cohesive algorithm (the CRS math), or a module's
/// table of unit tests.
const LONG_FILES: [&str; 2] = ["src/convert/crs.rs", "src/intake/csv/tests.rs"];
const MAX_LINES: usize = 600;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/lookup/providers/kakao.rs` → `lookup`).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

/// Which top-level modules each module names (`crate::x`), outside its `#[cfg(test)]` parts.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&file) else {
            continue;
        };
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Test code may use anything; it is at the end of a file, after `#[cfg(test)]`.
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        let entry = graph.entry(module.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                entry.insert(name);
            }
        }
    }
    graph
}

#[test]
fn modules_import_each_other_without_cycles() {
    let graph = imports();
    for m in GROUND_FLOOR.iter().chain(STAGES.iter()) {
        assert!(graph.contains_key(*m), "no module {m}: {graph:?}");
    }
    // Depth-first search for a back edge.
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = path.iter().position(|p| *p == m) {
            panic!("import cycle: {} -> {m}", path[at..].join(" -> "));
        }
        path.push(m);
        for next in graph.get(m).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(m);
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
    for (m, uses) in &graph {
        eprintln!(
            "{m} -> {}",
            uses.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
}

#[test]
fn the_ground_floor_imports_no_stage() {
    let graph = imports();
    for floor in GROUND_FLOOR {
        let stages: Vec<&String> = graph[floor]
            .iter()
            .filter(|m| STAGES.contains(&m.as_str()))
            .collect();
        assert!(stages.is_empty(), "{floor} imports {stages:?}");
    }
}

#[test]
fn the_pipeline_reaches_kafka_and_the_database_only_through_bus_and_store() {
    let mut files = Vec::new();
    rust_files(&src().join("pipeline"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for crate_name in ["rdkafka", "sqlx"] {
            assert!(
                !text.contains(&format!("{crate_name}::")),
                "{} names {crate_name}",
                file.display()
            );
        }
    }
}

#[test]
fn no_source_file_is_a_drawer() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in files {
        let rel = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        if !LONG_FILES.contains(&rel.as_str()) {
            assert!(lines <= MAX_LINES, "{rel} has {lines} lines");
        }
    }
}

/// Every job option (as `--help` declares it) has its row in the README's options table, and
/// every variable any command reads is in the README.
#[test]
fn the_readme_documents_every_option_and_variable() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for doc in geobatch::options::JobSpec::docs() {
        let row = readme
            .lines()
            .find(|l| {
                l.starts_with(&format!("| `{} ", doc.flag))
                    || l.starts_with(&format!("| `{}`", doc.flag))
            })
            .unwrap_or_else(|| panic!("no README row for {}", doc.flag));
        assert!(row.contains(&format!("`{}`", doc.name)), "{row}");
    }
    let mut vars = BTreeSet::new();
    for command in ["convert", "serve", "worker", "broker", "retry"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_geobatch"))
            .args([command, "--help"])
            .env_clear()
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        for (i, _) in help.match_indices("[env: ") {
            let name: String = help[i + 6..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            vars.insert(name);
        }
    }
    assert!(
        vars.contains("GEOBATCH_DATA_DIR") && vars.contains("KAKAO_REST_API_KEY"),
        "{vars:?}"
    );
    for var in vars {
        assert!(
            readme.contains(&format!("`{var}`")),
            "the README does not name {var}"
        );
    }
}
