//! The embedding program of README.md ("Embedding"), kept in
//! `tests/readme/embedding.rs`: it compiles as a whole program, runs, and
//! is exactly what the README shows. Edit both together.

mod snippet {
    include!("readme/embedding.rs");

    #[test]
    fn the_readme_embedding_program_runs() {
        main().expect("the README's program fails");
    }
}

const PROGRAM: &str = include_str!("readme/embedding.rs");
const README: &str = include_str!("../../README.md");

#[test]
fn the_readme_shows_this_program() {
    let section = README
        .split("\n## ")
        .find(|s| s.starts_with("Embedding\n"))
        .expect("README.md has an \"## Embedding\" section");
    let start = section
        .find("```rust\n")
        .expect("the Embedding section has a ```rust block")
        + "```rust\n".len();
    let len = section[start..]
        .find("```\n")
        .expect("the ```rust block is closed");
    assert_eq!(
        &section[start..start + len],
        PROGRAM,
        "README.md's embedding program and examples/tests/readme/embedding.rs differ"
    );
    assert!(
        PROGRAM.contains("fn main()"),
        "a whole program, not a fragment"
    );
}
