//! Property tests of the Scheme reader (`examples/scheme/reader.rs`):
//! whatever the input (random unicode, unbalanced brackets, quotes,
//! `#`-syntax, huge numbers, deep nesting), reading gives data or an error,
//! never a panic or a stack overflow. Reading is done with
//! [`Interpreter::check_source`], which reads every form and evaluates
//! nothing. A panic fails the property (proptest catches it); a stack
//! overflow would abort the whole test binary.

use movegc::Heap;
use movegc_examples::scheme::{Interpreter, SchemeError};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn heap() -> Heap {
    Heap::builder().capacity(64 << 20).build().unwrap()
}

/// Reads all of `src`; `Ok` or any `SchemeError` is fine.
fn read_all(it: &mut Interpreter, src: &str) -> Result<(), SchemeError> {
    it.check_source(src)
}

/// Pieces of Scheme syntax, valid and not, to glue together.
const PIECES: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "'",
    "`",
    ",",
    ",@",
    "#(",
    "#\\",
    "#\\x",
    "#\\space",
    "#\\x41",
    "#\\é",
    "#;",
    "#|",
    "|#",
    "#t",
    "#f",
    "#true",
    "#eof",
    "#x",
    "#xff",
    "#b102",
    "#o7",
    "#d",
    "#e-",
    "#z",
    "#",
    "\"",
    "\\",
    "\\x",
    "\\x41;",
    "\\xFFFFFFFFF;",
    "\\x110000;",
    "\\é",
    "\\\n",
    "\\ ",
    "|",
    ".",
    "..",
    " . ",
    "1.5",
    ".5",
    "1/2",
    "1e3",
    "-",
    "+",
    "+1",
    "-0",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999999999999999999999",
    "#x8000000000000000",
    "foo",
    "λ",
    "é",
    "日本",
    "🦀",
    "\u{0}",
    "\u{feff}",
    "\u{10ffff}",
    " ",
    "\t",
    "\n",
    "\r",
    ";",
    "; comment\n",
];

/// A string of 0..200 syntax pieces.
fn scheme_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(PIECES).prop_map(str::to_string),
            1 => any::<char>().prop_map(String::from),
        ],
        0..200,
    )
    .prop_map(|v| v.concat())
}

/// Nesting openers repeated `n` times, then some soup.
fn deep_soup() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&["(", "[", "#(", "'", "`", ",@", "#;", "#|", "(a . "][..]),
        0usize..3000,
        scheme_soup(),
    )
        .prop_map(|(open, n, tail)| format!("{}{tail}", open.repeat(n)))
}

#[test]
fn reader_never_panics_on_arbitrary_input() {
    let heap = heap();
    let mut it = Interpreter::new(&heap).unwrap();
    let it = std::cell::RefCell::new(&mut it);
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    let input = prop_oneof![
        2 => any::<String>(),
        1 => "\\PC*",
        4 => scheme_soup(),
        1 => deep_soup(),
    ];
    runner
        .run(&input, |src| {
            let _ = read_all(&mut it.borrow_mut(), &src);
            Ok(())
        })
        .unwrap();
    // Still usable afterwards.
    assert!(it.borrow_mut().check_source("(a (b . c) #(1 2))").is_ok());
}

/// 100 000 levels of every nesting syntax: an error (too deep or
/// incomplete), not a stack overflow, on an ordinary 2 MiB test thread.
#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let heap = heap();
    let mut it = Interpreter::new(&heap).unwrap();
    for open in ["(", "[", "#(", "'", "`", ",", ",@", "#;", "(a . ", "#;("] {
        let src = open.repeat(100_000);
        match read_all(&mut it, &src) {
            Err(SchemeError::TooDeep(_) | SchemeError::Incomplete) => {}
            other => panic!("{open:?} x 100000: expected TooDeep or Incomplete, got {other:?}"),
        }
        // And closed again: too deep, however well formed.
        if open == "(" {
            let src = format!("{}{}", "(".repeat(100_000), ")".repeat(100_000));
            assert!(matches!(
                read_all(&mut it, &src),
                Err(SchemeError::TooDeep(_))
            ));
        }
    }
    // Block comments nest without recursion: 100 000 levels are fine.
    let src = format!("{}{} 1", "#|".repeat(100_000), "|#".repeat(100_000));
    assert!(read_all(&mut it, &src).is_ok());
    assert!(it.check_source("(1 2 3)").is_ok());
}

/// Regression: an unknown escape whose character is not ASCII made the
/// error's line count slice the source inside that character (a panic);
/// found by `reader_never_panics_on_arbitrary_input`.
#[test]
fn non_ascii_unknown_escape_is_a_read_error() {
    let heap = heap();
    let mut it = Interpreter::new(&heap).unwrap();
    for src in ["\"\\\u{10a0c}", "\"\\é\"", "x\n\"\\日本\" y"] {
        match read_all(&mut it, src) {
            Err(SchemeError::Read { message, .. }) => {
                assert!(message.contains("unknown escape"), "{src:?}: {message}")
            }
            other => panic!("{src:?}: expected a read error, got {other:?}"),
        }
    }
    match read_all(&mut it, "é\n\n\"\\é\"") {
        Err(SchemeError::Read { line, message }) => {
            assert_eq!(line, 3);
            assert!(message.contains("'\\é'"), "{message}");
        }
        other => panic!("expected a read error, got {other:?}"),
    }
}

/// Regression: each `#;` recursed without a stack check, so 100 000 of
/// them overflowed the stack. They are counted now, with the same meaning.
#[test]
fn datum_comments_nest_without_recursion() {
    let heap = heap();
    let mut it = Interpreter::new(&heap).unwrap();
    assert_eq!(it.eval_str("#; #; a b 7").unwrap(), "7");
    assert_eq!(
        it.eval_str("(list #;#;1 2 3 #;(4 #;5) 6)").unwrap(),
        "(3 6)"
    );
    assert!(matches!(
        read_all(&mut it, "#; #; a"),
        Err(SchemeError::Incomplete)
    ));
    assert!(matches!(
        read_all(&mut it, "(a #;)"),
        Err(SchemeError::Read { .. })
    ));
    let n = 100_000;
    let src = format!("{}{} 8", "#;".repeat(n), " x".repeat(n));
    assert_eq!(it.eval_str(&src).unwrap(), "8");
    assert!(matches!(
        read_all(&mut it, &"#;".repeat(n)),
        Err(SchemeError::Incomplete)
    ));
}
