//! The deployment files under deploy/ stay true to the code: every binlake TOML file there
//! (including the one embedded in the Kubernetes ConfigMap) loads with binlake's own config
//! loader, so a misspelt or removed key fails here; and deploy/check.sh validates the
//! Compose file, the systemd units and the Kubernetes manifests (see its header; it needs
//! docker-compose, systemd-analyze and python3-yaml, installed by `deploy/check.sh install`).

use std::path::{Path, PathBuf};
use std::process::Command;

use binlake::config::Config;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CONFIGMAP: &str = "deploy/k8s/configmap.yaml";

/// Every `*.toml` under deploy/, relative to the repository root, sorted.
fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read deploy/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            toml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path.strip_prefix(ROOT).expect("under the root").to_owned());
        }
    }
    out.sort();
}

/// The block scalar `key: |` of a YAML file, de-indented (enough YAML for a ConfigMap).
fn yaml_block(yaml: &str, key: &str) -> Option<String> {
    let mut lines = yaml.lines();
    let key_indent = lines
        .by_ref()
        .find_map(|l| (l.trim() == format!("{key}: |")).then(|| l.len() - l.trim_start().len()))?;
    let block: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > key_indent)
        .collect();
    let indent = block
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()?;
    Some(
        block
            .iter()
            .map(|l| l.get(indent..).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

fn load(text: &str, name: &str) -> Config {
    // No environment: the files must be complete and valid as they are.
    Config::from_toml(text, Path::new(name), std::iter::empty())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_binlake_config_under_deploy_loads() {
    let mut files = Vec::new();
    toml_files(&Path::new(ROOT).join("deploy"), &mut files);
    let mut configs: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(Path::new(ROOT).join(f)).expect("read");
            (f.display().to_string(), text)
        })
        .collect();
    let yaml = std::fs::read_to_string(Path::new(ROOT).join(CONFIGMAP)).expect("read");
    let embedded = yaml_block(&yaml, "binlake.toml")
        .unwrap_or_else(|| panic!("{CONFIGMAP} has no `binlake.toml: |` block"));
    configs.push((format!("{CONFIGMAP} (binlake.toml)"), embedded));

    let names: Vec<&str> = configs.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "deploy/config/example.toml",
        "deploy/docker/binlake.toml",
        "deploy/systemd/binlake.toml",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }

    for (name, text) in &configs {
        let cfg = load(text, name);
        // Passwords come from files, credentials or the environment, never from these files.
        assert!(
            cfg.mysql.password.is_none(),
            "{name}: plain-text [mysql] password"
        );
        assert!(
            cfg.registry.password.is_none(),
            "{name}: plain-text [registry] password"
        );
    }
}

#[test]
fn the_yaml_block_extraction_sees_every_line_and_a_typo() {
    let yaml = "data:\n  binlake.toml: |\n    [mysql]\n    host = \"db\"\n\n    [kafka]\n    brokerz = \"k:9092\"\nother: 1\n";
    let block = yaml_block(yaml, "binlake.toml").expect("block");
    assert_eq!(
        block,
        "[mysql]\nhost = \"db\"\n\n[kafka]\nbrokerz = \"k:9092\""
    );
    let err = Config::from_toml(&block, Path::new("t"), std::iter::empty()).unwrap_err();
    assert!(err.to_string().contains("brokerz"), "{err}");
}

#[test]
fn deploy_check_script_passes() {
    // The units' ExecStart binary must exist for `systemd-analyze verify`: the script checks
    // copies pointing at the binlake binary Cargo built for this test.
    let out = Command::new("bash")
        .arg(Path::new(ROOT).join("deploy/check.sh"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_binlake"))
        .current_dir(ROOT)
        .output()
        .expect("run bash deploy/check.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "deploy/check.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("deploy checks passed"), "{stdout}");
}
