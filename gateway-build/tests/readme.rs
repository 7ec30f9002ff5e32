//! The README's gateway.toml examples compile: documentation that drifts from the
//! schema is a bug.

/// Every ```toml block in README.md that declares routes is a valid gateway.toml.
#[test]
fn readme_examples_compile() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .filter(|block| block.contains("[[routes]]"))
        .collect();
    assert!(!blocks.is_empty(), "README.md has no gateway.toml example");
    for block in blocks {
        if let Err(d) = gateway_build::generate("README.md", block) {
            panic!("{}\n{block}", d.render(false));
        }
    }
}
