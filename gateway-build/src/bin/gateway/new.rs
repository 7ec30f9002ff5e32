//! `gateway new NAME`: a gateway crate that builds and runs as it is.

use std::path::Path;

/// Where this workspace's crates are: the scaffold depends on them by path.
const SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

const FILES: [(&str, &str); 5] = [
    ("Cargo.toml", include_str!("template/Cargo.toml")),
    ("build.rs", include_str!("template/build.rs")),
    ("src/main.rs", include_str!("template/main.rs")),
    ("gateway.toml", include_str!("template/gateway.toml")),
    (".gitignore", include_str!("template/gitignore")),
];

pub fn run(args: &[String]) -> Result<u8, String> {
    let mut name = None;
    let mut sdk = SDK.to_owned();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runtime-path" => {
                sdk = args
                    .next()
                    .ok_or("--runtime-path needs a directory")?
                    .clone()
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            value if name.is_none() => name = Some(value.to_owned()),
            extra => return Err(format!("unexpected argument `{extra}`")),
        }
    }
    let path = name.ok_or("usage: gateway new NAME [--runtime-path DIR]")?;
    let dir = Path::new(&path);
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .ok_or_else(|| format!("`{path}` is not a crate name: use letters, digits, `-` and `_`"))?;
    if dir.exists() {
        return Err(format!("`{path}` already exists"));
    }
    let sdk = std::fs::canonicalize(&sdk).map_err(|e| format!("runtime path `{sdk}`: {e}"))?;
    for (file, template) in FILES {
        let target = dir.join(file);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let text = template
            .replace("{{name}}", name)
            .replace("{{sdk}}", &sdk.display().to_string());
        std::fs::write(&target, text)
            .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    }
    println!(
        "created {path}: `cd {path} && cargo run --release`, then `curl http://127.0.0.1:8080/api/`"
    );
    Ok(0)
}
