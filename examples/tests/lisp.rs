//! Tests of the Scheme interpreter example: the shipped programs under
//! every collection strategy (on small heaps, so they collect many times
//! while running), and unit tests of the reader, printer, evaluator (tail
//! calls, closures, `set!`, derived forms), of errors as values, and of the
//! REPL on piped input (an error in the middle, prompts, read errors).

use movegc::{Heap, Strategy};
use movegc_examples::scheme::repl::{repl, ReplSummary, CONTINUATION_PROMPT, PROMPT};
use movegc_examples::scheme::{on_big_stack, run_program, Interpreter, SchemeError, PROGRAMS};

// ----- the programs -------------------------------------------------------------

const TAK: &str = "(tak 18 12 6) = 7\n";
const NQUEENS: &str = "8 queens: 92 solutions\n1..6 queens: (1 0 0 2 10 4)\n";
const MERGESORT: &str = "sorted 12 lists of 4000: #t\n\
                         checksum: 706633222\n\
                         smallest of the last: (1607 1862 2075 2329 2388)\n";
const CHURN: &str = "checksum: 617588444\n\
                     window: 192480\n\
                     last: \"2088820888208882088820888208882088820888\" \
                     #(1 two 3 four (5 . 6) (7 8 9) #t #f ())\n";

fn program(name: &str) -> &'static str {
    PROGRAMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, src)| *src)
        .unwrap_or_else(|| panic!("no program {name}"))
}

/// A heap small enough that the programs collect several times.
fn small_heap(strategy: Strategy) -> Heap {
    Heap::builder()
        .capacity(8 << 20)
        .min_free(1 << 20)
        .strategy(strategy)
        .build()
        .unwrap()
}

fn check_program(name: &str, strategy: Strategy, expected: &str) {
    let heap = small_heap(strategy);
    let out = run_program(&heap, program(name));
    if let Err(e) = &out.result {
        panic!(
            "{name} under {strategy:?} failed: {e}\noutput so far:\n{}",
            out.output
        );
    }
    assert_eq!(out.output, expected, "{name} under {strategy:?}");
    // `run_program` ran its mutator on another thread.
    heap.wait_idle().expect("no mutator on this thread");
    let stats = heap.stats();
    assert!(
        stats.cycles > 0,
        "{name} under {strategy:?}: no collection happened"
    );
}

macro_rules! program_tests {
    ($($test:ident: $file:literal, $strategy:ident, $expected:ident;)*) => {
        $(
            #[test]
            fn $test() {
                check_program($file, Strategy::$strategy, $expected);
            }
        )*
    };
}

program_tests! {
    tak_concurrent_move: "tak.scm", ConcurrentMove, TAK;
    tak_concurrent_copy: "tak.scm", ConcurrentCopy, TAK;
    tak_stop_the_world: "tak.scm", StopTheWorld, TAK;
    nqueens_concurrent_move: "nqueens.scm", ConcurrentMove, NQUEENS;
    nqueens_concurrent_copy: "nqueens.scm", ConcurrentCopy, NQUEENS;
    nqueens_stop_the_world: "nqueens.scm", StopTheWorld, NQUEENS;
    mergesort_concurrent_move: "mergesort.scm", ConcurrentMove, MERGESORT;
    mergesort_concurrent_copy: "mergesort.scm", ConcurrentCopy, MERGESORT;
    mergesort_stop_the_world: "mergesort.scm", StopTheWorld, MERGESORT;
    churn_concurrent_move: "churn.scm", ConcurrentMove, CHURN;
    churn_concurrent_copy: "churn.scm", ConcurrentCopy, CHURN;
    churn_stop_the_world: "churn.scm", StopTheWorld, CHURN;
}

#[test]
fn program_files_on_disk_match_the_embedded_ones() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scheme");
    for (name, src) in PROGRAMS {
        let on_disk = std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(&on_disk, src, "{name}");
    }
}

// ----- unit tests ---------------------------------------------------------------

fn heap(mib: usize) -> Heap {
    Heap::builder().capacity(mib << 20).build().unwrap()
}

/// An interpreter on a fresh 32 MiB heap.
fn scheme() -> Interpreter {
    Interpreter::new(&heap(32)).unwrap()
}

/// The value of the last form of `src`, as `write` prints it.
fn eval(it: &mut Interpreter, src: &str) -> String {
    match it.eval_str(src) {
        Ok(v) => v,
        Err(e) => panic!("{src}: {e}"),
    }
}

fn eval1(src: &str) -> String {
    eval(&mut scheme(), src)
}

/// What `src` writes with `display` and friends.
fn output(src: &str) -> String {
    let mut it = scheme();
    eval(&mut it, src);
    it.take_output()
}

fn error(src: &str) -> SchemeError {
    match scheme().eval_str(src) {
        Ok(v) => panic!("{src}: expected an error, got {v}"),
        Err(e) => e,
    }
}

#[test]
fn reader_and_printer_round_trip() {
    for (src, printed) in [
        ("'(1 2 3)", "(1 2 3)"),
        ("'(1 . 2)", "(1 . 2)"),
        ("'(1 (2 3) . 4)", "(1 (2 3) . 4)"),
        ("'(a . (b . (c)))", "(a b c)"),
        ("'()", "()"),
        ("'#(1 \"two\" #\\3 (4))", "#(1 \"two\" #\\3 (4))"),
        ("#()", "#()"),
        ("''a", "(quote a)"),
        (
            "'`(a ,b ,@c)",
            "(quasiquote (a (unquote b) (unquote-splicing c)))",
        ),
        ("#t", "#t"),
        ("#false", "#f"),
        ("-42", "-42"),
        ("+7", "7"),
        ("#x-ff", "-255"),
        ("9223372036854775807", "9223372036854775807"),
        ("\"a\\nb\\t\\\"q\\\"\\\\\"", "\"a\\nb\\t\\\"q\\\"\\\\\""),
        ("\"\\x41;\"", "\"A\""),
        ("#\\a", "#\\a"),
        ("#\\space", "#\\space"),
        ("#\\x41", "#\\A"),
        ("'|hello world|", "|hello world|"),
        ("(string->symbol \"\")", "||"),
        ("(string->symbol \"12\")", "|12|"),
        ("'(+ - ... ->x <=?)", "(+ - ... ->x <=?)"),
        ("'[a b]", "(a b)"),
        ("'Hello", "Hello"),
        (
            "'(1 #;(hidden) 2 #| block #| nested |# |# 3) ; comment",
            "(1 2 3)",
        ),
    ] {
        assert_eq!(eval1(src), printed, "{src}");
    }
}

#[test]
fn display_prints_the_way_scheme_systems_do() {
    assert_eq!(
        output(
            r#"(display '(1 2 3)) (newline)
               (display (cons 1 2)) (newline)
               (display #t) (display " ") (display #f) (newline)
               (display "unquoted") (write " quoted") (newline)
               (display (vector 1 2)) (newline)
               (display #\x) (write #\x) (newline)
               (display '(a "b" #\c (d . e) #(f)))"#
        ),
        "(1 2 3)\n(1 . 2)\n#t #f\nunquoted\" quoted\"\n#(1 2)\nx#\\x\n(a b c (d . e) #(f))"
    );
}

#[test]
fn reader_errors_are_values() {
    let mut it = scheme();
    assert!(matches!(
        it.check_source("(define (f x)"),
        Err(SchemeError::Incomplete)
    ));
    assert!(matches!(
        it.check_source("\"open string"),
        Err(SchemeError::Incomplete)
    ));
    assert!(it.check_source("(+ 1 2) (car '(1))").is_ok());
    assert!(matches!(
        it.eval_str("(+ 1 2"),
        Err(SchemeError::Incomplete)
    ));
    for bad in [
        ")",
        "(1 . )",
        "(1 . 2 3)",
        "1.5",
        "#\\nonsense",
        "\"\\q\"",
        "(. 1)",
        "#z",
    ] {
        match it.eval_str(bad) {
            Err(SchemeError::Read { .. }) => {}
            other => panic!("{bad}: expected a read error, got {other:?}"),
        }
    }
    match it.eval_str("\n\n  (1 . 2 3)") {
        Err(SchemeError::Read { line, .. }) => assert_eq!(line, 3),
        other => panic!("expected a read error, got {other:?}"),
    }
    assert_eq!(eval(&mut it, "(+ 1 2)"), "3");
}

#[test]
fn arithmetic_and_comparisons() {
    for (src, v) in [
        ("(+ 1 2 3)", "6"),
        ("(+)", "0"),
        ("(- 10 1 2)", "7"),
        ("(- 5)", "-5"),
        ("(* 6 7)", "42"),
        ("(quotient 17 5)", "3"),
        ("(quotient -17 5)", "-3"),
        ("(remainder -17 5)", "-2"),
        ("(modulo -17 5)", "3"),
        ("(modulo 17 -5)", "-3"),
        ("(= 1 1 1)", "#t"),
        ("(< 1 2 3)", "#t"),
        ("(< 1 3 2)", "#f"),
        ("(>= 3 3 1)", "#t"),
        ("(<= 1 1 0)", "#f"),
        ("(> 2 1)", "#t"),
        ("(max 1 5 3)", "5"),
        ("(min 4 -2)", "-2"),
        ("(abs -9)", "9"),
        ("(gcd 12 18)", "6"),
        ("(lcm 4 6)", "12"),
        ("(expt 2 62)", "4611686018427387904"),
        ("(number->string 255 16)", "\"ff\""),
        ("(string->number \"-12\")", "-12"),
        ("(string->number \"x\")", "#f"),
        ("(even? 10)", "#t"),
        ("(odd? 10)", "#f"),
        ("(zero? 0)", "#t"),
        ("(* 4611686018427387904 1)", "4611686018427387904"),
        ("(+ 1000 1000)", "2000"),
    ] {
        assert_eq!(eval1(src), v, "{src}");
    }
    assert!(matches!(
        error("(quotient 1 0)"),
        SchemeError::DivisionByZero(_)
    ));
    assert!(matches!(
        error("(* 4611686018427387904 4)"),
        SchemeError::Overflow(_)
    ));
    assert!(matches!(
        error("(+ 1 \"2\")"),
        SchemeError::WrongType { .. }
    ));
}

#[test]
fn lists_vectors_strings_and_symbols() {
    for (src, v) in [
        ("(cons 1 '(2))", "(1 2)"),
        ("(car '(1 2))", "1"),
        ("(cdr '(1 2))", "(2)"),
        ("(cadr '(1 2 3))", "2"),
        ("(list 1 (list 2) 3)", "(1 (2) 3)"),
        ("(list)", "()"),
        ("(null? '())", "#t"),
        ("(null? '(1))", "#f"),
        ("(pair? '(1))", "#t"),
        ("(pair? '())", "#f"),
        ("(length '(1 2 3))", "3"),
        ("(append '(1 2) '(3) '() '(4 5))", "(1 2 3 4 5)"),
        ("(append '(1) 2)", "(1 . 2)"),
        ("(append)", "()"),
        ("(reverse '(1 2 3))", "(3 2 1)"),
        ("(list-tail '(1 2 3) 1)", "(2 3)"),
        ("(list-ref '(a b c) 2)", "c"),
        ("(memv 2 '(1 2 3))", "(2 3)"),
        ("(member '(2) '((1) (2)))", "((2))"),
        ("(assq 'b '((a 1) (b 2)))", "(b 2)"),
        ("(assoc \"b\" '((\"a\" . 1) (\"b\" . 2)))", "(\"b\" . 2)"),
        (
            "(let ((p (list 1 2))) (set-car! p 9) (set-cdr! (cdr p) '(3)) p)",
            "(9 2 3)",
        ),
        ("(make-vector 3 'x)", "#(x x x)"),
        ("(vector 1 2 3)", "#(1 2 3)"),
        (
            "(let ((v (make-vector 2 0))) (vector-set! v 1 'y) v)",
            "#(0 y)",
        ),
        ("(vector-ref #(1 2 3) 2)", "3"),
        ("(vector-length (make-vector 5 0))", "5"),
        ("(vector->list #(1 2))", "(1 2)"),
        ("(list->vector '(1 2))", "#(1 2)"),
        ("(vector-map (lambda (x) (* x x)) #(1 2 3))", "#(1 4 9)"),
        ("(string-length \"hello\")", "5"),
        ("(string-append \"foo\" \"bar\" \"\")", "\"foobar\""),
        ("(string=? \"abc\" \"abc\")", "#t"),
        ("(string=? \"abc\" \"abd\")", "#f"),
        ("(string<? \"abc\" \"abd\")", "#t"),
        ("(substring \"hello\" 1 3)", "\"el\""),
        ("(string-ref \"abc\" 1)", "#\\b"),
        ("(string->list \"ab\")", "(#\\a #\\b)"),
        ("(list->string (list #\\a #\\b))", "\"ab\""),
        ("(symbol->string 'abc)", "\"abc\""),
        ("(eq? (string->symbol \"abc\") 'abc)", "#t"),
        ("(eq? 'a 'a)", "#t"),
        ("(eq? '() '())", "#t"),
        ("(eqv? 100000 100000)", "#t"),
        ("(equal? '(1 #(2 \"x\")) (list 1 (vector 2 \"x\")))", "#t"),
        ("(equal? '(1 2) '(1 3))", "#f"),
        ("(not #f)", "#t"),
        ("(not '())", "#f"),
        ("(map + '(1 2 3) '(10 20 30))", "(11 22 33)"),
        (
            "(let ((acc '())) (for-each (lambda (x) (set! acc (cons x acc))) '(1 2 3)) acc)",
            "(3 2 1)",
        ),
        ("(apply + 1 2 '(3 4))", "10"),
        ("(apply list '())", "()"),
        ("(char->integer #\\A)", "65"),
        ("(procedure? car)", "#t"),
        ("(procedure? (lambda () 1))", "#t"),
        ("(procedure? 'car)", "#f"),
        ("car", "#<procedure car>"),
        ("(define (sq x) (* x x)) sq", "#<procedure sq>"),
    ] {
        assert_eq!(eval1(src), v, "{src}");
    }
}

#[test]
fn special_forms() {
    for (src, v) in [
        ("(if #f 1)", ""),
        ("(if '() 'yes 'no)", "yes"),
        ("(cond ((assv 2 '((1 . a) (2 . b))) => cdr) (else 'none))", "b"),
        ("(cond ((> 1 2) 'a) ((> 2 1) 'b) (else 'c))", "b"),
        ("(cond ((> 1 2) 'a) (else 'c))", "c"),
        ("(cond (#f 1))", ""),
        ("(cond ((+ 1 1)))", "2"),
        ("(case (* 2 3) ((2 3 5 7) 'prime) ((1 4 6 8 9) 'composite))", "composite"),
        ("(case 'x ((a) 1) (else 'other))", "other"),
        ("(and 1 2 3)", "3"),
        ("(and 1 #f 3)", "#f"),
        ("(and)", "#t"),
        ("(or #f 2)", "2"),
        ("(or)", "#f"),
        ("(when (> 2 1) 'a 'b)", "b"),
        ("(unless (> 2 1) 'a)", ""),
        ("(let ((x 1) (y 2)) (+ x y))", "3"),
        ("(let ((x 1)) (let ((x 2) (y x)) y))", "1"),
        ("(let* ((x 1) (y (+ x 1))) (* x y))", "2"),
        ("(let* () 5)", "5"),
        ("(letrec ((ev? (lambda (n) (if (= n 0) #t (od? (- n 1))))) (od? (lambda (n) (if (= n 0) #f (ev? (- n 1)))))) (ev? 100))", "#t"),
        ("(letrec* ((a 1) (b (+ a 1))) b)", "2"),
        ("(let loop ((i 0) (acc '())) (if (= i 3) acc (loop (+ i 1) (cons i acc))))", "(2 1 0)"),
        ("(do ((i 0 (+ i 1)) (acc '() (cons i acc))) ((= i 3) acc))", "(2 1 0)"),
        ("(let ((v (make-vector 3 0))) (do ((i 0 (+ i 1))) ((= i 3) v) (vector-set! v i i)))", "#(0 1 2)"),
        ("(begin 1 2 3)", "3"),
        ("(define x 10) (begin (define y 5)) (+ x y)", "15"),
        ("(let ((x 1)) `(a ,x ,@(list 2 3) (b ,(+ x 1)) . c))", "(a 1 2 3 (b 2) . c)"),
        ("`#(1 ,(+ 1 1))", "#(1 2)"),
        ("`(1 `(2 ,(3 ,(+ 1 3))))", "(1 (quasiquote (2 (unquote (3 4)))))"),
        ("((lambda args args) 1 2 3)", "(1 2 3)"),
        ("((lambda (a . rest) (list a rest)) 1 2 3)", "(1 (2 3))"),
        ("((lambda (a . rest) rest) 1)", "()"),
        ("(define (g . xs) (length xs)) (g 1 2 3 4)", "4"),
        ("(define ((adder n) x) (+ n x)) ((adder 3) 4)", "7"),
        ("(define (f) (define a 1) (define (g) (* a 10)) (g)) (f)", "10"),
        ("(define (f) (define a 1) (begin (define b 2)) (+ a b)) (f)", "3"),
        ("(let () (define x 2) (* x x))", "4"),
        ("(define lambda-name (lambda (x) x)) lambda-name", "#<procedure lambda-name>"),
        ("(let ((if (lambda (a b c) 'shadowed))) (if 1 2 3))", "shadowed"),
    ] {
        assert_eq!(eval1(src), v, "{src}");
    }
}

#[test]
fn closures_capture_their_environment() {
    let mut it = scheme();
    eval(
        &mut it,
        "(define (make-counter)
           (let ((n 0))
             (lambda () (set! n (+ n 1)) n)))
         (define c1 (make-counter))
         (define c2 (make-counter))",
    );
    assert_eq!(eval(&mut it, "(c1) (c1) (c1)"), "3");
    assert_eq!(eval(&mut it, "(c2)"), "1");
    assert_eq!(eval(&mut it, "(c1)"), "4");
    assert_eq!(
        eval(
            &mut it,
            "(define (make-adders n)
               (let loop ((i 0) (acc '()))
                 (if (= i n) (reverse acc) (loop (+ i 1) (cons (lambda (x) (+ x i)) acc)))))
             (map (lambda (f) (f 100)) (make-adders 4))"
        ),
        "(100 101 102 103)"
    );
    // Closures and their frames survive (and follow) many collections.
    it.eval_str(
        "(define fs (map (lambda (i) (lambda () (* i i))) '(1 2 3 4 5 6 7 8 9 10)))
         (define (garbage n) (if (= n 0) 'done (begin (make-vector 100 n) (garbage (- n 1)))))",
    )
    .unwrap();
    let before = it.stats().cycles;
    for _ in 0..5 {
        eval(&mut it, "(garbage 20000)");
    }
    assert!(it.stats().cycles > before, "no collection happened");
    assert_eq!(
        eval(&mut it, "(map (lambda (f) (f)) fs)"),
        "(1 4 9 16 25 36 49 64 81 100)"
    );
}

#[test]
fn set_changes_globals_and_locals() {
    let mut it = scheme();
    assert_eq!(eval(&mut it, "(define x 1) (set! x (+ x 1)) x"), "2");
    assert_eq!(
        eval(
            &mut it,
            "(let ((y 1)) (set! y 5) (set! x (* y 2)) (list x y))"
        ),
        "(10 5)"
    );
    assert_eq!(
        eval(
            &mut it,
            "(define (f) (let ((z 1)) ((lambda () (set! z 7))) z)) (f)"
        ),
        "7"
    );
    assert!(matches!(
        it.eval_str("(set! never-defined 1)"),
        Err(SchemeError::Unbound(name)) if name == "never-defined"
    ));
}

#[test]
fn tail_calls_run_in_constant_stack_and_handles() {
    // Run on a thread with a small stack: a loop that grew the Rust stack
    // by even a few bytes per iteration would overflow it.
    let h = heap(16);
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let mut it = Interpreter::new(&h).unwrap();
            let handles = it.handle_count();
            for src in [
                "(define (loop i) (if (= i 0) 'done (loop (- i 1)))) (loop 1000000)",
                "(let loop ((i 0)) (if (< i 300000) (loop (+ i 1)) 'done))",
                "(do ((i 0 (+ i 1))) ((= i 300000) 'done))",
                "(define (ev? n) (if (= n 0) #t (od? (- n 1))))
                 (define (od? n) (if (= n 0) #f (ev? (- n 1))))
                 (if (ev? 300000) 'done 'wrong)",
                "(define (c i) (cond ((= i 0) 'done) (else (and #t (or #f (when #t (c (- i 1))))))))
                 (c 300000)",
                "(define (a i) (if (= i 0) 'done (apply a (list (- i 1))))) (a 300000)",
                "(define (l i) (let* ((j (- i 1))) (letrec ((k j)) (if (< k 0) 'done (l k)))))
                 (l 300000)",
            ] {
                it.reset_deepest();
                assert_eq!(it.eval_str(src).unwrap(), "done", "{src}");
                assert!(it.deepest() < 10, "{src}: nesting {}", it.deepest());
                assert_eq!(it.handle_count(), handles, "{src}: handles leaked");
            }
            assert!(it.stats().cycles > 0);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn deep_recursion_works_on_a_big_stack_and_is_an_error_past_the_limit() {
    let src = "(define (count n) (if (= n 0) 0 (+ 1 (count (- n 1)))))";
    let h = heap(256);
    let out = run_program(&h, &format!("{src} (display (count 100000))"));
    out.result.unwrap();
    assert_eq!(out.output, "100000");
    assert!(out.deepest >= 100000);

    // The default limit is safe on an ordinary test thread, and so is
    // printing and comparing deeply nested data.
    let mut it = scheme();
    eval(&mut it, src);
    assert_eq!(eval(&mut it, "(count 300)"), "300");
    assert!(matches!(
        it.eval_str("(count 1000000)"),
        Err(SchemeError::TooDeep(_))
    ));
    assert_eq!(eval(&mut it, "(count 10)"), "10");
    eval(
        &mut it,
        "(define (nest n acc) (if (= n 0) acc (nest (- n 1) (list acc))))
         (define deep (nest 100000 '()))",
    );
    assert!(matches!(it.eval_str("deep"), Err(SchemeError::TooDeep(_))));
    assert!(matches!(
        it.eval_str("(equal? deep (nest 100000 '()))"),
        Err(SchemeError::TooDeep(_))
    ));
    let nested = "(".repeat(1_000_000);
    assert!(matches!(it.eval_str(&nested), Err(SchemeError::TooDeep(_))));
    assert_eq!(eval(&mut it, "(count 10)"), "10");
}

#[test]
fn errors_are_values_not_panics() {
    assert!(matches!(error("undefined-thing"), SchemeError::Unbound(n) if n == "undefined-thing"));
    assert!(matches!(
        error("(car 5)"),
        SchemeError::WrongType { procedure, got, .. } if procedure == "car" && got == "5"
    ));
    assert!(matches!(error("(cdr '())"), SchemeError::WrongType { .. }));
    assert!(matches!(
        error("((lambda (x y) x) 1)"),
        SchemeError::Arity { expected, got: 1, .. } if expected == "2"
    ));
    assert!(matches!(
        error("(define (f a . b) a) (f)"),
        SchemeError::Arity { procedure, expected, got: 0 }
            if procedure == "f" && expected == "at least 1"
    ));
    assert!(matches!(error("(car 1 2)"), SchemeError::Arity { .. }));
    assert!(matches!(error("(1 2)"), SchemeError::NotProcedure(v) if v == "1"));
    assert!(matches!(
        error("(vector-ref (vector 1 2) 2)"),
        SchemeError::Range {
            index: 2,
            len: 2,
            ..
        }
    ));
    assert!(matches!(error("(letrec ((a b) (b 1)) a)"), SchemeError::Uninitialized(n) if n == "b"));
    assert!(
        matches!(error("(error \"boom:\" 1 \"two\")"), SchemeError::User(m) if m == "boom: 1 \"two\"")
    );
    for bad in [
        "(if)",
        "(lambda (x x) x)",
        "(lambda (1) 1)",
        "(let ((x)) x)",
        "(quote)",
        "()",
        "(+ (define x 1) 2)",
        "(let loop)",
        "(cond (else 1) (#t 2))",
        "(lambda (x))",
    ] {
        match scheme().eval_str(bad) {
            Err(SchemeError::Syntax { .. }) => {}
            other => panic!("{bad}: expected a syntax error, got {other:?}"),
        }
    }
    // Messages are readable.
    assert_eq!(
        error("(car 5)").to_string(),
        "car: wrong type argument: expected a pair, got 5"
    );
    assert_eq!(error("nope").to_string(), "unbound variable: nope");
    // The interpreter goes on after an error.
    let mut it = scheme();
    assert!(it.eval_str("(define x 1) (car x)").is_err());
    assert_eq!(eval(&mut it, "(+ x 1)"), "2");
}

#[test]
fn circular_lists_are_errors_not_hangs() {
    let mut it = scheme();
    eval(&mut it, "(define l (list 1 2 3)) (set-cdr! (cddr l) l)");
    assert_eq!(eval(&mut it, "(list? l)"), "#f");
    assert!(matches!(
        it.eval_str("(length l)"),
        Err(SchemeError::WrongType { .. })
    ));
    assert!(matches!(
        it.eval_str("(apply + l)"),
        Err(SchemeError::WrongType { .. })
    ));
    assert!(eval(&mut it, "l").ends_with(" ...)"));
}

#[test]
fn running_out_of_heap_is_an_error_and_the_interpreter_survives() {
    let h = Heap::builder().capacity(4 << 20).build().unwrap();
    let mut it = Interpreter::new(&h).unwrap();
    eval(
        &mut it,
        "(define (build n acc) (if (= n 0) acc (build (- n 1) (cons n acc))))",
    );
    let e = it.eval_str("(length (build 10000000 '()))").unwrap_err();
    assert!(matches!(e, SchemeError::HeapExhausted(_)), "{e:?}");
    assert!(
        e.to_string().starts_with("out of memory: heap exhausted"),
        "{e}"
    );
    // A vector too big for the heap, too.
    let e = it.eval_str("(make-vector 100000000 0)").unwrap_err();
    assert!(matches!(e, SchemeError::HeapExhausted(_)), "{e:?}");
    // The garbage is gone after the error: smaller work succeeds.
    assert_eq!(eval(&mut it, "(length (build 10000 '()))"), "10000");
}

#[test]
fn output_can_go_to_a_sink() {
    #[derive(Clone, Default)]
    struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Shared::default();
    let mut it = Interpreter::with_output(&heap(16), Box::new(sink.clone())).unwrap();
    it.run("(display \"a\") (newline) (for-each display '(1 2 3))")
        .unwrap();
    assert_eq!(
        String::from_utf8(sink.0.borrow().clone()).unwrap(),
        "a\n123"
    );
    assert_eq!(it.take_output(), "");
}

#[test]
fn eval_next_walks_the_forms_one_by_one() {
    let mut it = scheme();
    let src = "(define x 2) (* x 21) (display x)";
    let mut pos = 0;
    assert_eq!(it.eval_next(src, &mut pos).unwrap().as_deref(), Some(""));
    assert_eq!(it.eval_next(src, &mut pos).unwrap().as_deref(), Some("42"));
    assert_eq!(it.eval_next(src, &mut pos).unwrap().as_deref(), Some(""));
    assert_eq!(it.eval_next(src, &mut pos).unwrap(), None);
    assert_eq!(it.take_output(), "2");
}

#[test]
fn big_stack_helper_returns_the_value() {
    assert_eq!(on_big_stack(|| 6 * 7).unwrap(), 42);
}

// ----- the REPL -----------------------------------------------------------------

/// An output stream the test keeps a handle on.
#[derive(Clone, Default)]
struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the REPL prints for `input` piped into it: stdout (the
/// interpreter's output, the values and the prompts, in order), stderr,
/// and the summary.
fn pipe_into_repl(input: &[u8], prompt: bool) -> (String, String, ReplSummary) {
    let out = Shared::default();
    let mut it = Interpreter::with_output(&heap(16), Box::new(out.clone())).unwrap();
    let mut err = Vec::new();
    let summary = repl(&mut it, input, &mut out.clone(), &mut err, prompt).unwrap();
    let out = String::from_utf8(out.0.borrow().clone()).unwrap();
    (out, String::from_utf8(err).unwrap(), summary)
}

#[test]
fn repl_reports_an_error_and_evaluates_the_expressions_after_it() {
    let input = "(define x 40)\n\
                 (car 5)\n\
                 (display \"after\") (newline)\n\
                 (+ x 2)\n";
    let (out, err, summary) = pipe_into_repl(input.as_bytes(), false);
    assert_eq!(out, "after\n42\n");
    assert_eq!(
        err,
        "error: car: wrong type argument: expected a pair, got 5\n"
    );
    assert_eq!(
        summary,
        ReplSummary {
            evaluated: 4,
            errors: 1
        }
    );
    // Piped input with an error fails the exit status; a terminal's not.
    assert!(!summary.success(false));
    assert!(summary.success(true));

    // Several expressions on one line: the ones after the failing one run.
    let (out, err, summary) = pipe_into_repl(
        b"(display 'a) (undefined-thing) (display 'b) (* 6 7)\n",
        false,
    );
    assert_eq!(out, "ab42\n");
    assert_eq!(err, "error: unbound variable: undefined-thing\n");
    assert_eq!((summary.evaluated, summary.errors), (3, 1));

    // Without errors the session succeeds either way.
    let (out, err, summary) = pipe_into_repl(b"(+ 1 2)\n'(a b)\n", false);
    assert_eq!((out.as_str(), err.as_str()), ("3\n(a b)\n", ""));
    assert!(summary.success(false) && summary.success(true));
}

#[test]
fn repl_prompts_on_piped_input() {
    let input = "(define x 1)\n(car x)\n(+ x\n   41)\n";
    let (out, err, summary) = pipe_into_repl(input.as_bytes(), true);
    // A prompt before each expression, the continuation prompt inside the
    // one spanning two lines, a newline at the end of the input.
    let p = PROMPT;
    let c = CONTINUATION_PROMPT;
    assert_eq!(out, format!("{p}{p}{p}{c}42\n{p}\n"));
    assert_eq!(
        err,
        "error: car: wrong type argument: expected a pair, got 1\n"
    );
    assert_eq!((summary.evaluated, summary.errors), (2, 1));
}

#[test]
fn repl_skips_the_rest_of_a_line_after_a_read_error_only() {
    // `)` is a read error: the rest of its line is skipped (where the next
    // expression starts is unknown), the next line is read again.
    let (out, err, summary) = pipe_into_repl(b"(+ 1 2) ) (+ 3 4)\n(+ 5 6)\n", false);
    assert_eq!(out, "3\n11\n");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!((summary.evaluated, summary.errors), (2, 1));

    // A line that is not UTF-8 is an error; the next one is evaluated.
    let (out, err, summary) = pipe_into_repl(b"(+ 1 2)\n(display \"\xff\")\n(+ 3 4)\n", false);
    assert_eq!(out, "3\n7\n");
    assert_eq!(err, "error: input line is not UTF-8; skipped\n");
    assert_eq!((summary.evaluated, summary.errors), (2, 1));

    // An expression still open at the end of the input is an error.
    let (out, err, summary) = pipe_into_repl(b"(+ 1 2)\n(car '(1)\n", false);
    assert_eq!(out, "3\n");
    assert_eq!(err, format!("error: {}\n", SchemeError::Incomplete));
    assert_eq!((summary.evaluated, summary.errors), (1, 1));
    assert!(!summary.success(false));
}
