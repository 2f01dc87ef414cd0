//! Reading the files of `docker/` for tests/docker.rs: YAML through Python's PyYAML (as
//! JSON), the Dockerfile's instructions, and the TOML keys the manifests must agree on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::common::external;
use crate::common::process::weir_command;

/// PyYAML, pinned for when the system's python3 has none.
const PYYAML: &[&str] = &["PyYAML==6.0.3"];

/// `docker/` in the repository, or a file in it.
pub fn docker(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docker")
        .join(file)
}

/// The text of a file under `docker/`.
pub fn read(file: &str) -> String {
    std::fs::read_to_string(docker(file)).unwrap_or_else(|e| panic!("read docker/{file}: {e}"))
}

/// `python3` and the `PYTHONPATH` under which `import yaml` works.
fn python() -> &'static (String, Option<PathBuf>) {
    static PYTHON: OnceLock<(String, Option<PathBuf>)> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let has_yaml = Command::new("python3")
            .args(["-c", "import yaml"])
            .output()
            .is_ok_and(|out| out.status.success());
        if has_yaml {
            return ("python3".to_owned(), None);
        }
        let deps = external::install_once("pyyaml", PYYAML, |dir| {
            external::pip_install_target(
                "python3",
                dir,
                PYYAML,
                "python3 with pip, and PyPI reachable, are needed to read the YAML files",
            )
        })
        .unwrap_or_else(|e| panic!("cannot set up PyYAML: {e}"));
        ("python3".to_owned(), Some(deps))
    })
}

/// Every YAML document of `docker/{file}`, as PyYAML's `safe_load_all` reads it.
pub fn yaml(file: &str) -> Vec<Value> {
    let (exe, deps) = python();
    let mut cmd = Command::new(exe);
    cmd.args([
        "-c",
        "import json, sys, yaml\n\
         print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1], encoding='utf-8')))))",
    ]);
    cmd.arg(docker(file));
    if let Some(deps) = deps {
        cmd.env("PYTHONPATH", deps);
    }
    let out = cmd.output().expect("run python3");
    assert!(
        out.status.success(),
        "docker/{file} is not valid YAML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from python3")
}

/// `value` as a string (numbers too, since YAML leaves `"5432"` and `5432` to taste).
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other}"),
    }
}

/// A list of strings (`[]` when absent).
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| items.iter().map(text).collect())
        .unwrap_or_default()
}

/// A compose `environment:` mapping (or `KEY=VALUE` list) as pairs.
pub fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let item = text(item);
                let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The manifest of `kind` among `docs`.
pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} among the manifests"))
}

/// The Dockerfile's instructions of the last stage (the runtime image), as (keyword,
/// arguments), with continuation lines joined.
pub fn dockerfile_final_stage() -> Vec<(String, String)> {
    let text = read("Dockerfile").replace("\\\n", " ");
    let mut stage = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keyword, args) = line.split_once(' ').unwrap_or((line, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            stage.clear();
        }
        stage.push((keyword, args.trim().to_owned()));
    }
    stage
}

/// The arguments of the stage's `keyword` instructions.
pub fn instructions<'a>(stage: &'a [(String, String)], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|(k, _)| k == keyword)
        .map(|(_, args)| args.as_str())
        .collect()
}

/// A key of a weir.toml, read with the `config` crate as weir does, e.g.
/// `databases[0].hosts`.
pub fn toml_key<T: serde::de::DeserializeOwned>(toml: &str, key: &str) -> T {
    ::config::Config::builder()
        .add_source(::config::File::from_str(toml, ::config::FileFormat::Toml))
        .build()
        .and_then(|c| c.get(key))
        .unwrap_or_else(|e| panic!("{key} in weir.toml: {e}"))
}

/// Runs `weir --config FILE --check` on `toml` with `env`; panics with weir's words
/// unless it says the configuration is valid.
pub fn weir_check(what: &str, toml: &str, env: &BTreeMap<String, String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, toml).expect("write");
    let out = weir_command()
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .envs(env)
        .output()
        .expect("run weir --check");
    assert!(
        out.status.success(),
        "{what}: weir --check refuses it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
