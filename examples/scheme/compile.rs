//! The compiler: heap data (as read) to a tree of [`Node`]s.
//!
//! Compiling resolves every variable once, to a lexical address (frames up,
//! slot) or a global (symbol id), recognises the special forms and turns
//! the derived ones (`cond`, `case`, `let*`, named `let`, `do`,
//! `quasiquote`, ...) into a handful of core nodes. Constants stay heap
//! objects, in the interpreter's constant table; nodes refer to them by
//! index, so the tree itself holds no heap references.
//!
//! A frame holds the parameters of a lambda, or the variables of a `let` /
//! `letrec`, followed by the internal definitions of its body (found by
//! scanning the body first, so they can be mutually recursive).

use std::rc::Rc;

use movegc::{Layout, Local, Mutator};

use super::builtins::{APPEND, CONS, LIST, LIST_TO_VECTOR};
use super::value::{tag, Core, Special, CONST_FALSE, CONST_TRUE, CONST_UNSPEC};
use super::{Result, SchemeError};

/// Symbol id of compiler temporaries: never equal to a real symbol's.
const ANON: u32 = u32::MAX;

/// A compiled expression.
#[derive(Debug)]
pub enum Node {
    /// Constant number `n` of the constant table.
    Const(u32),
    /// A local variable: `depth` frames up, slot `slot` (1-based: slot 0
    /// is the parent link); `sym` names it in error messages.
    Local {
        /// Frames to walk up.
        depth: u32,
        /// Slot in that frame.
        slot: u32,
        /// The variable's symbol id.
        sym: u32,
    },
    /// The global variable of symbol `id`.
    Global(u32),
    /// `set!` (or internal `define`) of a local variable.
    SetLocal {
        /// Frames to walk up.
        depth: u32,
        /// Slot in that frame.
        slot: u32,
        /// The new value.
        value: Rc<Node>,
    },
    /// `set!` or top-level `define` of a global variable.
    SetGlobal {
        /// The variable's symbol id.
        sym: u32,
        /// The new value.
        value: Rc<Node>,
        /// `define` (may create the binding) rather than `set!`.
        define: bool,
    },
    /// `(if test then else)`.
    If(Rc<Node>, Rc<Node>, Rc<Node>),
    /// A closure of lambda number `n` over the current frame.
    Lambda(u32),
    /// Evaluate in order; the value of the last (never empty).
    Seq(Box<[Rc<Node>]>),
    /// `and` (never empty).
    And(Box<[Rc<Node>]>),
    /// `or` (never empty).
    Or(Box<[Rc<Node>]>),
    /// A procedure call.
    Call(Rc<Node>, Box<[Rc<Node>]>),
    /// A direct call of primitive number `n` (for derived forms, immune to
    /// the user redefining its global name).
    PrimCall(u32, Box<[Rc<Node>]>),
    /// A new frame whose first slots get the values of `inits`, evaluated
    /// in the current environment; then `body` in the new frame.
    Let {
        /// The new frame's layout.
        layout: Layout,
        /// Initial values of the first slots.
        inits: Box<[Rc<Node>]>,
        /// Evaluated in the new frame.
        body: Rc<Node>,
    },
    /// Like [`Let`](Node::Let), but the inits are evaluated in the new
    /// frame, in order, each stored before the next is evaluated.
    Letrec {
        /// The new frame's layout.
        layout: Layout,
        /// Initial values of the first slots.
        inits: Box<[Rc<Node>]>,
        /// Evaluated in the new frame.
        body: Rc<Node>,
    },
    /// `#t` if the value of the node is `eqv?` to an element of the
    /// constant list number `n` (for `case`).
    Memv(Rc<Node>, u32),
}

/// A compiled `lambda`.
#[derive(Debug)]
pub struct Lambda {
    /// The name it was defined with, for printing and errors.
    pub name: Option<String>,
    /// Number of required parameters.
    pub required: usize,
    /// Whether extra arguments are collected in a list (the slot after the
    /// required ones).
    pub rest: bool,
    /// Layout of the frame of a call (parameters and internal defines).
    pub layout: Layout,
    /// The body.
    pub body: Rc<Node>,
}

/// The layout of a frame with `vars` variables.
pub fn frame_layout(vars: usize) -> Result<Layout> {
    Ok(Layout::ref_array(tag::FRAME, vars + 1)?)
}

/// Compiles one form; borrows the interpreter core for interning,
/// constants and the lambda table.
pub struct Compiler<'c> {
    core: &'c mut Core,
    /// Variables of the frames being compiled, outermost first.
    frames: Vec<Vec<u32>>,
}

fn node(n: Node) -> Rc<Node> {
    Rc::new(n)
}

fn konst(i: u32) -> Rc<Node> {
    node(Node::Const(i))
}

fn seq(mut nodes: Vec<Rc<Node>>) -> Rc<Node> {
    if nodes.len() == 1 {
        nodes.pop().expect("one node")
    } else if nodes.is_empty() {
        konst(CONST_UNSPEC)
    } else {
        node(Node::Seq(nodes.into()))
    }
}

fn prim(index: usize, args: Vec<Rc<Node>>) -> Rc<Node> {
    node(Node::PrimCall(index as u32, args.into()))
}

impl<'c> Compiler<'c> {
    /// A compiler at the top level (no enclosing frames).
    pub fn new(core: &'c mut Core) -> Compiler<'c> {
        Compiler {
            core,
            frames: Vec::new(),
        }
    }

    /// Compiles a top-level form (where `define` makes a global).
    pub fn compile_toplevel(&mut self, m: &mut Mutator, x: Local) -> Result<Rc<Node>> {
        self.compile(m, x, true)
    }

    fn syntax(&self, m: &mut Mutator, x: Local, message: &str) -> SchemeError {
        SchemeError::Syntax {
            form: self.core.show(m, x),
            message: message.to_owned(),
        }
    }

    /// Where `id` is bound: a local (innermost binding first) or a global.
    fn resolve(&self, id: u32) -> Node {
        for (i, frame) in self.frames.iter().rev().enumerate() {
            if let Some(pos) = frame.iter().rposition(|&v| v == id) {
                return Node::Local {
                    depth: i as u32,
                    slot: pos as u32 + 1,
                    sym: id,
                };
            }
        }
        Node::Global(id)
    }

    fn is_local(&self, id: u32) -> bool {
        self.frames.iter().any(|f| f.contains(&id))
    }

    /// The symbol id of `x` if it is a symbol.
    fn symbol(&self, m: &mut Mutator, x: Local) -> Result<Option<u32>> {
        if m.tag(x)? == tag::SYMBOL {
            Ok(Some(self.core.symbol_id(m, x)?))
        } else {
            Ok(None)
        }
    }

    /// The special form `x` starts with, if any (a keyword not shadowed by
    /// a local variable).
    fn special_of(&self, m: &mut Mutator, x: Local) -> Result<Option<Special>> {
        if m.tag(x)? != tag::PAIR {
            return Ok(None);
        }
        let head = self.core.car(m, x)?;
        Ok(self
            .symbol(m, head)?
            .filter(|&id| !self.is_local(id))
            .and_then(|id| self.core.kw.special.get(&id).copied()))
    }

    /// Whether `x` is the (unshadowed) keyword `kw`.
    fn is_keyword(&self, m: &mut Mutator, x: Local, kw: u32) -> Result<bool> {
        Ok(self.symbol(m, x)? == Some(kw) && !self.is_local(kw))
    }

    fn items(&self, m: &mut Mutator, x: Local, form: Local) -> Result<Vec<Local>> {
        self.core
            .list_items(m, x)?
            .ok_or_else(|| self.syntax(m, form, "not a proper list"))
    }

    fn compile(&mut self, m: &mut Mutator, x: Local, def_ok: bool) -> Result<Rc<Node>> {
        self.core.check_stack()?;
        match m.tag(x)? {
            tag::SYMBOL => {
                let id = self.core.symbol_id(m, x)?;
                Ok(node(self.resolve(id)))
            }
            tag::PAIR => {
                if let Some(s) = self.special_of(m, x)? {
                    return self.special(m, s, x, def_ok);
                }
                let items = self.items(m, x, x)?;
                let f = self.compile(m, items[0], false)?;
                let args = self.compile_all(m, &items[1..])?;
                Ok(node(Node::Call(f, args.into())))
            }
            tag::NIL => Err(self.syntax(m, x, "empty combination")),
            _ => Ok(konst(self.core.add_const(m, x)?)),
        }
    }

    fn compile_all(&mut self, m: &mut Mutator, xs: &[Local]) -> Result<Vec<Rc<Node>>> {
        xs.iter().map(|&x| self.compile(m, x, false)).collect()
    }

    fn special(&mut self, m: &mut Mutator, s: Special, x: Local, def_ok: bool) -> Result<Rc<Node>> {
        let items = self.items(m, x, x)?;
        let n = items.len();
        match s {
            Special::Quote => {
                if n != 2 {
                    return Err(self.syntax(m, x, "quote takes one datum"));
                }
                Ok(konst(self.core.add_const(m, items[1])?))
            }
            Special::Quasiquote => {
                if n != 2 {
                    return Err(self.syntax(m, x, "quasiquote takes one template"));
                }
                self.quasi(m, items[1], 1)
            }
            Special::Unquote => Err(self.syntax(m, x, "unquote outside quasiquote")),
            Special::Lambda => {
                if n < 3 {
                    return Err(self.syntax(m, x, "lambda needs parameters and a body"));
                }
                self.lambda(m, x, items[1], &items[2..], None)
            }
            Special::Define => self.define(m, x, &items, def_ok),
            Special::Set => {
                if n != 3 {
                    return Err(self.syntax(m, x, "set! takes a variable and a value"));
                }
                let Some(id) = self.symbol(m, items[1])? else {
                    return Err(self.syntax(m, x, "set! of a non-variable"));
                };
                let value = self.compile(m, items[2], false)?;
                Ok(node(match self.resolve(id) {
                    Node::Local { depth, slot, .. } => Node::SetLocal { depth, slot, value },
                    _ => Node::SetGlobal {
                        sym: id,
                        value,
                        define: false,
                    },
                }))
            }
            Special::If => {
                if !(3..=4).contains(&n) {
                    return Err(self.syntax(m, x, "if takes a test and one or two branches"));
                }
                let test = self.compile(m, items[1], false)?;
                let then = self.compile(m, items[2], false)?;
                let els = match items.get(3) {
                    Some(&e) => self.compile(m, e, false)?,
                    None => konst(CONST_UNSPEC),
                };
                Ok(node(Node::If(test, then, els)))
            }
            Special::Cond => self.cond(m, &items[1..]),
            Special::Case => self.case(m, x, &items),
            Special::And | Special::Or => {
                if n == 1 {
                    return Ok(konst(if s == Special::And {
                        CONST_TRUE
                    } else {
                        CONST_FALSE
                    }));
                }
                let mut parts = self.compile_all(m, &items[1..])?;
                if parts.len() == 1 {
                    return Ok(parts.pop().expect("one part"));
                }
                Ok(node(if s == Special::And {
                    Node::And(parts.into())
                } else {
                    Node::Or(parts.into())
                }))
            }
            Special::When | Special::Unless => {
                if n < 3 {
                    return Err(self.syntax(m, x, "when/unless need a test and a body"));
                }
                let test = self.compile(m, items[1], false)?;
                let body = seq(self.compile_all(m, &items[2..])?);
                let none = konst(CONST_UNSPEC);
                Ok(node(if s == Special::When {
                    Node::If(test, body, none)
                } else {
                    Node::If(test, none, body)
                }))
            }
            Special::Let => self.let_(m, x, &items),
            Special::LetStar => {
                if n < 3 {
                    return Err(self.syntax(m, x, "let* needs bindings and a body"));
                }
                let bindings = self.bindings(m, x, items[1])?;
                self.let_star(m, &bindings, &items[2..])
            }
            Special::Letrec => {
                if n < 3 {
                    return Err(self.syntax(m, x, "letrec needs bindings and a body"));
                }
                let bindings = self.bindings(m, x, items[1])?;
                self.frames.push(bindings.iter().map(|b| b.0).collect());
                let r = self.letrec_body(m, &bindings, &items[2..]);
                let frame = self.frames.pop().expect("letrec frame");
                let (inits, body) = r?;
                Ok(node(Node::Letrec {
                    layout: frame_layout(frame.len())?,
                    inits: inits.into(),
                    body,
                }))
            }
            Special::Begin => {
                if n == 1 {
                    return Ok(konst(CONST_UNSPEC));
                }
                let parts = items[1..]
                    .iter()
                    .map(|&e| self.compile(m, e, def_ok))
                    .collect::<Result<Vec<_>>>()?;
                Ok(seq(parts))
            }
            Special::Do => self.do_(m, x, &items),
        }
    }

    /// Parameters: `(a b)`, `(a . rest)` or `args`. Returns the variable
    /// ids and whether the last one is a rest list.
    fn params(&self, m: &mut Mutator, form: Local, p: Local) -> Result<(Vec<u32>, bool)> {
        let mut vars = Vec::new();
        let mut cur = p;
        let rest = loop {
            match m.tag(cur)? {
                tag::NIL => break false,
                tag::SYMBOL => {
                    vars.push(self.core.symbol_id(m, cur)?);
                    break true;
                }
                tag::PAIR => {
                    let a = self.core.car(m, cur)?;
                    match self.symbol(m, a)? {
                        Some(id) => vars.push(id),
                        None => return Err(self.syntax(m, form, "parameter is not a symbol")),
                    }
                    cur = self.core.cdr(m, cur)?;
                }
                _ => return Err(self.syntax(m, form, "bad parameter list")),
            }
        };
        for (i, v) in vars.iter().enumerate() {
            if vars[..i].contains(v) {
                return Err(self.syntax(m, form, "duplicate parameter"));
            }
        }
        Ok((vars, rest))
    }

    fn add_lambda(&mut self, lambda: Lambda) -> Rc<Node> {
        self.core.lambdas.push(Rc::new(lambda));
        node(Node::Lambda((self.core.lambdas.len() - 1) as u32))
    }

    fn lambda(
        &mut self,
        m: &mut Mutator,
        form: Local,
        params: Local,
        body: &[Local],
        name: Option<u32>,
    ) -> Result<Rc<Node>> {
        let (vars, rest) = self.params(m, form, params)?;
        let required = vars.len() - rest as usize;
        self.frames.push(vars);
        let body = self.body(m, form, body);
        let frame = self.frames.pop().expect("lambda frame");
        let lambda = Lambda {
            name: name.map(|id| self.core.name(id).to_owned()),
            required,
            rest,
            layout: frame_layout(frame.len())?,
            body: body?,
        };
        Ok(self.add_lambda(lambda))
    }

    /// A lambda body, or a `let` body: internal defines first become
    /// variables of the innermost frame.
    fn body(&mut self, m: &mut Mutator, form: Local, body: &[Local]) -> Result<Rc<Node>> {
        if body.is_empty() {
            return Err(self.syntax(m, form, "empty body"));
        }
        for &b in body {
            self.scan_defines(m, b)?;
        }
        let parts = body
            .iter()
            .map(|&e| self.compile(m, e, true))
            .collect::<Result<Vec<_>>>()?;
        Ok(seq(parts))
    }

    fn scan_defines(&mut self, m: &mut Mutator, x: Local) -> Result<()> {
        match self.special_of(m, x)? {
            Some(Special::Define) => {
                let target = m.scope(|m| -> Result<Option<u32>> {
                    let rest = self.core.cdr(m, x)?;
                    if m.tag(rest)? != tag::PAIR {
                        return Ok(None);
                    }
                    let mut t = self.core.car(m, rest)?;
                    while m.tag(t)? == tag::PAIR {
                        t = self.core.car(m, t)?;
                    }
                    self.symbol(m, t)
                })?;
                if let (Some(id), Some(frame)) = (target, self.frames.last_mut()) {
                    if !frame.contains(&id) {
                        frame.push(id);
                    }
                }
            }
            Some(Special::Begin) => {
                let rest = self.core.cdr(m, x)?;
                if let Some(items) = self.core.list_items(m, rest)? {
                    for i in items {
                        self.scan_defines(m, i)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn define(
        &mut self,
        m: &mut Mutator,
        x: Local,
        items: &[Local],
        def_ok: bool,
    ) -> Result<Rc<Node>> {
        if !def_ok {
            return Err(self.syntax(
                m,
                x,
                "define is only allowed at top level and at the start of a body",
            ));
        }
        if items.len() < 2 {
            return Err(self.syntax(m, x, "define needs a name"));
        }
        let target = items[1];
        let (id, value) = if m.tag(target)? == tag::PAIR {
            // (define (name . params) body ...), also curried:
            // (define ((name a) b) ...) = (define (name a) (lambda (b) ...)).
            let head = self.core.car(m, target)?;
            let params = self.core.cdr(m, target)?;
            if items.len() < 3 {
                return Err(self.syntax(m, x, "procedure definition without a body"));
            }
            match self.symbol(m, head)? {
                Some(id) => (id, self.lambda(m, x, params, &items[2..], Some(id))?),
                None if m.tag(head)? == tag::PAIR => {
                    let lam = self.core.intern(m, "lambda")?;
                    let body = self.core.list(m, &items[2..])?;
                    let inner = self.core.cons(m, params, body)?;
                    let inner = self.core.cons(m, lam, inner)?;
                    let def = self.core.list(m, &[items[0], head, inner])?;
                    let parts = self.items(m, def, def)?;
                    return self.define(m, def, &parts, def_ok);
                }
                None => return Err(self.syntax(m, x, "bad procedure name")),
            }
        } else {
            let Some(id) = self.symbol(m, target)? else {
                return Err(self.syntax(m, x, "define of a non-symbol"));
            };
            let value = match items.len() {
                2 => konst(CONST_UNSPEC),
                3 => self.named(m, items[2], id)?,
                _ => return Err(self.syntax(m, x, "define takes one value")),
            };
            (id, value)
        };
        if self.frames.is_empty() {
            return Ok(node(Node::SetGlobal {
                sym: id,
                value,
                define: true,
            }));
        }
        Ok(node(match self.resolve(id) {
            Node::Local { depth, slot, .. } => Node::SetLocal { depth, slot, value },
            _ => Node::SetGlobal {
                sym: id,
                value,
                define: true,
            },
        }))
    }

    /// Compiles `x`, naming it `name` if it is a lambda expression.
    fn named(&mut self, m: &mut Mutator, x: Local, name: u32) -> Result<Rc<Node>> {
        if self.special_of(m, x)? == Some(Special::Lambda) {
            let items = self.items(m, x, x)?;
            if items.len() >= 3 {
                return self.lambda(m, x, items[1], &items[2..], Some(name));
            }
        }
        self.compile(m, x, false)
    }

    /// `((name init) ...)` as (symbol id, init) pairs.
    fn bindings(&self, m: &mut Mutator, form: Local, b: Local) -> Result<Vec<(u32, Local)>> {
        let mut out = Vec::new();
        for binding in self.items(m, b, form)? {
            let parts = self.items(m, binding, form)?;
            let id = match parts.first() {
                Some(&p) => self.symbol(m, p)?,
                None => None,
            };
            match (id, parts.len()) {
                (Some(id), 2) => out.push((id, parts[1])),
                _ => return Err(self.syntax(m, form, "bad binding")),
            }
        }
        Ok(out)
    }

    fn let_(&mut self, m: &mut Mutator, x: Local, items: &[Local]) -> Result<Rc<Node>> {
        if items.len() < 3 {
            return Err(self.syntax(m, x, "let needs bindings and a body"));
        }
        if let Some(name) = self.symbol(m, items[1])? {
            if items.len() < 4 {
                return Err(self.syntax(m, x, "named let needs bindings and a body"));
            }
            return self.named_let(m, x, name, items[2], &items[3..]);
        }
        let bindings = self.bindings(m, x, items[1])?;
        let inits = bindings
            .iter()
            .map(|&(id, e)| self.named(m, e, id))
            .collect::<Result<Vec<_>>>()?;
        self.frames.push(bindings.iter().map(|b| b.0).collect());
        let body = self.body(m, x, &items[2..]);
        let frame = self.frames.pop().expect("let frame");
        Ok(node(Node::Let {
            layout: frame_layout(frame.len())?,
            inits: inits.into(),
            body: body?,
        }))
    }

    /// `(let name ((v init) ...) body ...)`: the inits go in a frame of
    /// temporaries, then a one-slot `letrec` frame binds the loop procedure,
    /// which is called with the temporaries.
    fn named_let(
        &mut self,
        m: &mut Mutator,
        x: Local,
        name: u32,
        b: Local,
        body: &[Local],
    ) -> Result<Rc<Node>> {
        let bindings = self.bindings(m, x, b)?;
        let n = bindings.len();
        let inits = bindings
            .iter()
            .map(|&(_, e)| self.compile(m, e, false))
            .collect::<Result<Vec<_>>>()?;
        let mut vars: Vec<u32> = bindings.iter().map(|b| b.0).collect();
        for (i, v) in vars.iter().enumerate() {
            if vars[..i].contains(v) {
                return Err(self.syntax(m, x, "duplicate variable"));
            }
        }
        self.frames.push(vec![ANON; n]);
        self.frames.push(vec![name]);
        self.frames.push(std::mem::take(&mut vars));
        let lambda_body = self.body(m, x, body);
        let frame = self.frames.pop().expect("named let lambda frame");
        self.frames.pop();
        self.frames.pop();
        let lambda = Lambda {
            name: Some(self.core.name(name).to_owned()),
            required: n,
            rest: false,
            layout: frame_layout(frame.len())?,
            body: lambda_body?,
        };
        let lam = self.add_lambda(lambda);
        loop_entry(n, inits, lam)
    }

    fn let_star(
        &mut self,
        m: &mut Mutator,
        bindings: &[(u32, Local)],
        body: &[Local],
    ) -> Result<Rc<Node>> {
        let (init, vars, rest) = match bindings.split_first() {
            Some((&(id, e), rest)) => (Some(self.named(m, e, id)?), vec![id], rest),
            None => (None, Vec::new(), bindings),
        };
        self.frames.push(vars);
        let inner = if rest.is_empty() {
            // The innermost frame gets the body's internal defines.
            match body.first() {
                Some(&form) => self.body(m, form, body),
                None => Ok(konst(CONST_UNSPEC)),
            }
        } else {
            self.let_star(m, rest, body)
        };
        let frame = self.frames.pop().expect("let* frame");
        Ok(node(Node::Let {
            layout: frame_layout(frame.len())?,
            inits: init.into_iter().collect(),
            body: inner?,
        }))
    }

    fn letrec_body(
        &mut self,
        m: &mut Mutator,
        bindings: &[(u32, Local)],
        body: &[Local],
    ) -> Result<(Vec<Rc<Node>>, Rc<Node>)> {
        let inits = bindings
            .iter()
            .map(|&(id, e)| self.named(m, e, id))
            .collect::<Result<Vec<_>>>()?;
        let form = body[0];
        Ok((inits, self.body(m, form, body)?))
    }

    fn cond(&mut self, m: &mut Mutator, clauses: &[Local]) -> Result<Rc<Node>> {
        let Some((&clause, rest)) = clauses.split_first() else {
            return Ok(konst(CONST_UNSPEC));
        };
        let parts = self.items(m, clause, clause)?;
        if parts.is_empty() {
            return Err(self.syntax(m, clause, "empty cond clause"));
        }
        let else_ = self.core.kw.else_;
        if self.is_keyword(m, parts[0], else_)? {
            if !rest.is_empty() {
                return Err(self.syntax(m, clause, "else clause is not the last"));
            }
            return Ok(seq(self.compile_all(m, &parts[1..])?));
        }
        let test = self.compile(m, parts[0], false)?;
        let arrow = self.core.kw.arrow;
        if parts.len() == 3 && self.is_keyword(m, parts[1], arrow)? {
            // (test => f): bind the test's value in a one-slot frame.
            self.frames.push(vec![ANON]);
            let f = self.compile(m, parts[2], false);
            let more = f.and_then(|f| Ok((f, self.cond(m, rest)?)));
            self.frames.pop();
            let (f, more) = more?;
            let tmp = || {
                node(Node::Local {
                    depth: 0,
                    slot: 1,
                    sym: ANON,
                })
            };
            let call = node(Node::Call(f, vec![tmp()].into()));
            return Ok(node(Node::Let {
                layout: frame_layout(1)?,
                inits: vec![test].into(),
                body: node(Node::If(tmp(), call, more)),
            }));
        }
        let more = self.cond(m, rest)?;
        if parts.len() == 1 {
            return Ok(node(Node::Or(vec![test, more].into())));
        }
        let body = seq(self.compile_all(m, &parts[1..])?);
        Ok(node(Node::If(test, body, more)))
    }

    fn case(&mut self, m: &mut Mutator, x: Local, items: &[Local]) -> Result<Rc<Node>> {
        if items.len() < 2 {
            return Err(self.syntax(m, x, "case needs a key"));
        }
        let key = self.compile(m, items[1], false)?;
        self.frames.push(vec![ANON]);
        let r = self.case_clauses(m, x, &items[2..]);
        self.frames.pop();
        Ok(node(Node::Let {
            layout: frame_layout(1)?,
            inits: vec![key].into(),
            body: r?,
        }))
    }

    fn case_clauses(&mut self, m: &mut Mutator, x: Local, clauses: &[Local]) -> Result<Rc<Node>> {
        let mut chain = konst(CONST_UNSPEC);
        let else_ = self.core.kw.else_;
        for (i, &clause) in clauses.iter().enumerate().rev() {
            let parts = self.items(m, clause, x)?;
            if parts.len() < 2 {
                return Err(self.syntax(m, clause, "bad case clause"));
            }
            let body = seq(self.compile_all(m, &parts[1..])?);
            if self.is_keyword(m, parts[0], else_)? {
                if i + 1 != clauses.len() {
                    return Err(self.syntax(m, clause, "else clause is not the last"));
                }
                chain = body;
                continue;
            }
            if self.core.list_items(m, parts[0])?.is_none() {
                return Err(self.syntax(m, clause, "case data must be a list"));
            }
            let data = self.core.add_const(m, parts[0])?;
            let key = node(Node::Local {
                depth: 0,
                slot: 1,
                sym: ANON,
            });
            chain = node(Node::If(node(Node::Memv(key, data)), body, chain));
        }
        Ok(chain)
    }

    /// `(do ((var init step) ...) (test result ...) command ...)`.
    fn do_(&mut self, m: &mut Mutator, x: Local, items: &[Local]) -> Result<Rc<Node>> {
        if items.len() < 3 {
            return Err(self.syntax(m, x, "do needs variables and a test"));
        }
        let mut vars = Vec::new();
        let mut inits = Vec::new();
        let mut steps = Vec::new();
        for spec in self.items(m, items[1], x)? {
            let parts = self.items(m, spec, x)?;
            let id = match parts.first() {
                Some(&p) => self.symbol(m, p)?,
                None => None,
            };
            match (id, parts.len()) {
                (Some(id), 2 | 3) => {
                    vars.push(id);
                    inits.push(self.compile(m, parts[1], false)?);
                    steps.push(parts.get(2).copied());
                }
                _ => return Err(self.syntax(m, x, "bad do variable")),
            }
        }
        let test_clause = self.items(m, items[2], x)?;
        if test_clause.is_empty() {
            return Err(self.syntax(m, x, "do needs a test"));
        }
        let n = vars.len();
        self.frames.push(vec![ANON; n]);
        self.frames.push(vec![ANON]);
        self.frames.push(vars);
        let r = (|| -> Result<Rc<Node>> {
            let test = self.compile(m, test_clause[0], false)?;
            let result = seq(self.compile_all(m, &test_clause[1..])?);
            let mut body = self.compile_all(m, &items[3..])?;
            let mut next = Vec::new();
            for (i, step) in steps.iter().enumerate() {
                next.push(match step {
                    Some(s) => self.compile(m, *s, false)?,
                    None => node(Node::Local {
                        depth: 0,
                        slot: i as u32 + 1,
                        sym: ANON,
                    }),
                });
            }
            let again = node(Node::Local {
                depth: 1,
                slot: 1,
                sym: ANON,
            });
            body.push(node(Node::Call(again, next.into())));
            Ok(node(Node::If(test, result, seq(body))))
        })();
        self.frames.pop();
        self.frames.pop();
        self.frames.pop();
        let lambda = Lambda {
            name: Some("do-loop".into()),
            required: n,
            rest: false,
            layout: frame_layout(n)?,
            body: r?,
        };
        let lam = self.add_lambda(lambda);
        loop_entry(n, inits, lam)
    }

    /// A quasiquote template at nesting `depth`.
    fn quasi(&mut self, m: &mut Mutator, x: Local, depth: usize) -> Result<Rc<Node>> {
        self.core.check_stack()?;
        match m.tag(x)? {
            tag::PAIR => {
                let head = self.core.car(m, x)?;
                let (unquote, splicing, qq) = (
                    self.core.kw.unquote,
                    self.core.kw.unquote_splicing,
                    self.core.kw.quasiquote,
                );
                let head_id = self.symbol(m, head)?;
                if head_id == Some(unquote) || head_id == Some(qq) {
                    let parts = self.items(m, x, x)?;
                    if parts.len() != 2 {
                        return Err(self.syntax(m, x, "unquote takes one expression"));
                    }
                    if head_id == Some(unquote) && depth == 1 {
                        return self.compile(m, parts[1], false);
                    }
                    let inner = if head_id == Some(unquote) {
                        self.quasi(m, parts[1], depth - 1)?
                    } else {
                        self.quasi(m, parts[1], depth + 1)?
                    };
                    let sym = konst(self.core.add_const(m, head)?);
                    return Ok(prim(LIST, vec![sym, inner]));
                }
                let tail = self.core.cdr(m, x)?;
                if m.tag(head)? == tag::PAIR {
                    let hh = self.core.car(m, head)?;
                    if self.symbol(m, hh)? == Some(splicing) && depth == 1 {
                        let parts = self.items(m, head, x)?;
                        if parts.len() != 2 {
                            return Err(self.syntax(m, x, "unquote-splicing takes one expression"));
                        }
                        let spliced = self.compile(m, parts[1], false)?;
                        let rest = self.quasi(m, tail, depth)?;
                        return Ok(prim(APPEND, vec![spliced, rest]));
                    }
                }
                let a = self.quasi(m, head, depth)?;
                let d = self.quasi(m, tail, depth)?;
                Ok(prim(CONS, vec![a, d]))
            }
            tag::VECTOR => {
                let n = m.len(x)?;
                let mut elems = Vec::with_capacity(n);
                for i in 0..n {
                    elems.push(m.get_ref(x, i)?.ok_or_else(|| self.syntax(m, x, "hole"))?);
                }
                let l = self.core.list(m, &elems)?;
                let l = self.quasi(m, l, depth)?;
                Ok(prim(LIST_TO_VECTOR, vec![l]))
            }
            _ => Ok(konst(self.core.add_const(m, x)?)),
        }
    }
}

/// The entry of a named `let` or `do` loop: a frame of `n` temporaries
/// with the inits, a one-slot `letrec` frame holding the loop closure, and
/// the first call.
fn loop_entry(n: usize, inits: Vec<Rc<Node>>, lam: Rc<Node>) -> Result<Rc<Node>> {
    let args = (0..n)
        .map(|i| {
            node(Node::Local {
                depth: 1,
                slot: i as u32 + 1,
                sym: ANON,
            })
        })
        .collect::<Vec<_>>();
    let f = node(Node::Local {
        depth: 0,
        slot: 1,
        sym: ANON,
    });
    Ok(node(Node::Let {
        layout: frame_layout(n)?,
        inits: inits.into(),
        body: node(Node::Letrec {
            layout: frame_layout(1)?,
            inits: vec![lam].into(),
            body: node(Node::Call(f, args.into())),
        }),
    }))
}
