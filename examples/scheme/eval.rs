//! The evaluator: walks compiled [`Node`]s with environments that are heap
//! frames.
//!
//! [`Machine::eval`] evaluates one expression. Expressions that finish in
//! one step (constants, variables, `lambda`) return at once. The others run
//! a loop in which each iteration is one step in its own handle scope:
//! the step evaluates the sub-expressions that are not in tail position
//! (recursively), and either finishes, storing the value in a result handle
//! made outside the loop, or names the expression to continue with — the
//! branch of an `if`, the last expression of a body, the body of a called
//! closure — storing its environment in the loop's environment handle. So a
//! tail call costs neither Rust stack nor handles, and every temporary
//! handle of a step is released when the step ends.

use std::rc::Rc;

use movegc::{Local, Mutator};

use super::builtins::{APPLY, PRIMS};
use super::compile::{Compiler, Lambda, Node};
use super::reader::Reader;
use super::value::{internal, tag, Core};
use super::{Result, SchemeError};

/// The evaluator's state: the shared [`Core`] and an argument stack.
pub struct Machine {
    /// State shared with the compiler and the primitives.
    pub core: Core,
    /// Arguments of the calls being set up; a call's arguments are a
    /// suffix of it.
    args: Vec<Local>,
    /// Current nesting of non-tail evaluations.
    depth: usize,
    /// Deepest nesting seen.
    pub deepest: usize,
}

impl Machine {
    /// Sets up the core (in the current scope of `m`, which must outlive
    /// the machine's use).
    pub fn new(m: &mut Mutator) -> Result<Machine> {
        Ok(Machine {
            core: Core::new(m)?,
            args: Vec::new(),
            depth: 0,
            deepest: 0,
        })
    }

    /// Reads the form at `*pos`, compiles and evaluates it (see
    /// [`Interpreter::eval_next`](super::Interpreter::eval_next)).
    pub fn eval_next(
        &mut self,
        m: &mut Mutator,
        source: &str,
        pos: &mut usize,
    ) -> Result<Option<String>> {
        self.depth = 0;
        self.args.clear();
        self.core.mark_stack_base();
        m.scope(|m| {
            let mut reader = Reader::new(source, *pos);
            let form = reader.read(&mut self.core, m);
            if !matches!(form, Err(SchemeError::Incomplete)) {
                *pos = reader.pos();
            }
            let Some(form) = form? else {
                return Ok(None);
            };
            let code = m.scope(|m| Compiler::new(&mut self.core).compile_toplevel(m, form))?;
            let top = self.core.top_env;
            let v = self.eval(m, &code, top)?;
            let mut s = String::new();
            if m.tag(v)? != tag::UNSPEC {
                self.core.print(m, v, true, &mut s)?;
            }
            Ok(Some(s))
        })
    }

    /// Reads every form of `source`, evaluating nothing.
    pub fn check_source(&mut self, m: &mut Mutator, source: &str) -> Result<()> {
        self.core.mark_stack_base();
        let mut reader = Reader::new(source, 0);
        loop {
            let more = m.scope(|m| reader.read(&mut self.core, m).map(|f| f.is_some()))?;
            if !more {
                return Ok(());
            }
        }
    }

    /// Evaluates `node` in environment `env`; the value is a new handle in
    /// the caller's scope.
    pub fn eval(&mut self, m: &mut Mutator, node: &Rc<Node>, env: Local) -> Result<Local> {
        match &**node {
            Node::Const(i) => return self.core.constant(m, *i),
            Node::Local { depth, slot, sym } => return self.local(m, env, *depth, *slot, *sym),
            Node::Global(id) => return self.core.global(m, *id),
            Node::Lambda(i) => return self.core.closure(m, *i, env),
            Node::Call(f, args) => return self.call(m, f, args, env),
            _ => {}
        }
        self.nested(m, node, env)
    }

    /// Runs the evaluation loop one level deeper.
    fn nested(&mut self, m: &mut Mutator, node: &Rc<Node>, env: Local) -> Result<Local> {
        self.core.check_stack()?;
        self.depth += 1;
        self.deepest = self.deepest.max(self.depth);
        let r = self.eval_loop(m, node, env);
        self.depth -= 1;
        r
    }

    /// A call not in tail position. A primitive runs at once; a closure's
    /// body runs in a nested loop, in the frame made here. (Its handles
    /// stay in the caller's scope: the caller is a step, whose scope ends
    /// soon.)
    fn call(
        &mut self,
        m: &mut Mutator,
        f: &Rc<Node>,
        args: &[Rc<Node>],
        env: Local,
    ) -> Result<Local> {
        let fv = self.eval(m, f, env)?;
        let base = self.args.len();
        let r = self.push_args(m, args, env).and_then(|()| {
            let t = m.tag(fv)?;
            if t == tag::PRIMITIVE {
                let p = m.read_u64(fv, 0)? as usize;
                if p != APPLY {
                    self.check_arity_at(p, base)?;
                    return (PRIMS[p].f)(&mut self.core, m, &self.args[base..]);
                }
            } else if t == tag::CLOSURE {
                let lambda = self.core.lambdas[m.read_u64(fv, 0)? as usize].clone();
                let frame = self.bind(m, &lambda, fv, base)?;
                self.args.truncate(base);
                return self.nested(m, &lambda.body, frame);
            }
            // `apply` and errors: the general path.
            let result = m.dup(env)?;
            let envr = m.dup(env)?;
            match self.apply(m, fv, base, envr, result)? {
                None => Ok(result),
                Some(body) => {
                    self.args.truncate(base);
                    self.nested(m, &body, envr)
                }
            }
        });
        self.args.truncate(base);
        r
    }

    /// Checks the number of arguments on the stack above `base` against
    /// primitive `p`.
    fn check_arity_at(&self, p: usize, base: usize) -> Result<()> {
        let prim = &PRIMS[p];
        let n = self.args.len() - base;
        if n < prim.min || prim.max.is_some_and(|max| n > max) {
            return Err(SchemeError::Arity {
                procedure: prim.name.to_owned(),
                expected: match prim.max {
                    Some(max) if max == prim.min => max.to_string(),
                    Some(max) => format!("{} to {max}", prim.min),
                    None => format!("at least {}", prim.min),
                },
                got: n,
            });
        }
        Ok(())
    }

    fn eval_loop(&mut self, m: &mut Mutator, node: &Rc<Node>, env: Local) -> Result<Local> {
        // The result handle lives in the caller's scope; the environment
        // register and every step's temporaries in inner scopes.
        let result = m.dup(env)?;
        m.scope(|m| -> Result<()> {
            let env = m.dup(env)?;
            let mut node = node.clone();
            loop {
                match m.scope(|m| self.step(m, &node, env, result))? {
                    Some(next) => node = next,
                    None => return Ok(()),
                }
            }
        })?;
        Ok(result)
    }

    /// The value of a local variable.
    #[inline]
    fn local(&self, m: &mut Mutator, env: Local, depth: u32, slot: u32, sym: u32) -> Result<Local> {
        let mut frame = env;
        for _ in 0..depth {
            frame = m
                .get_ref(frame, 0)?
                .ok_or_else(|| internal("frame chain too short"))?;
        }
        m.get_ref(frame, slot as usize)?
            .ok_or_else(|| SchemeError::Uninitialized(self.core.name(sym).to_owned()))
    }

    /// The frame `depth` levels up from `env`.
    fn frame(&self, m: &mut Mutator, env: Local, depth: u32) -> Result<Local> {
        let mut frame = env;
        for _ in 0..depth {
            frame = m
                .get_ref(frame, 0)?
                .ok_or_else(|| internal("frame chain too short"))?;
        }
        Ok(frame)
    }

    /// One step of the loop: `Ok(None)` when the value is in `result`,
    /// `Ok(Some(next))` to continue with `next` in (the updated) `env`.
    fn step(
        &mut self,
        m: &mut Mutator,
        node: &Rc<Node>,
        env: Local,
        result: Local,
    ) -> Result<Option<Rc<Node>>> {
        match &**node {
            Node::Const(_) | Node::Local { .. } | Node::Global(_) | Node::Lambda(_) => {
                let v = self.eval(m, node, env)?;
                m.assign(result, v)?;
                Ok(None)
            }
            Node::If(test, then, els) => {
                let v = self.eval(m, test, env)?;
                Ok(Some(if self.core.is_false(m, v)? {
                    els.clone()
                } else {
                    then.clone()
                }))
            }
            Node::Seq(parts) => {
                let (last, init) = parts.split_last().ok_or_else(|| internal("empty seq"))?;
                for p in init {
                    m.scope(|m| self.eval(m, p, env).map(drop))?;
                }
                Ok(Some(last.clone()))
            }
            Node::And(parts) | Node::Or(parts) => {
                let and = matches!(&**node, Node::And(_));
                let (last, init) = parts.split_last().ok_or_else(|| internal("empty and"))?;
                for p in init {
                    let v = self.eval(m, p, env)?;
                    if self.core.is_false(m, v)? == and {
                        m.assign(result, v)?;
                        return Ok(None);
                    }
                }
                Ok(Some(last.clone()))
            }
            Node::SetLocal { depth, slot, value } => {
                let v = self.eval(m, value, env)?;
                let frame = self.frame(m, env, *depth)?;
                m.set_ref(frame, *slot as usize, Some(v))?;
                m.assign(result, self.core.unspec)?;
                Ok(None)
            }
            Node::SetGlobal { sym, value, define } => {
                if !*define && !self.core.is_bound(m, *sym)? {
                    return Err(SchemeError::Unbound(self.core.name(*sym).to_owned()));
                }
                let v = self.eval(m, value, env)?;
                self.core.set_global(m, *sym, v)?;
                m.assign(result, self.core.unspec)?;
                Ok(None)
            }
            Node::Let {
                layout,
                inits,
                body,
            } => {
                let frame = m.alloc(layout)?;
                m.set_ref(frame, 0, Some(env))?;
                for (i, x) in inits.iter().enumerate() {
                    let v = self.eval(m, x, env)?;
                    m.set_ref(frame, i + 1, Some(v))?;
                }
                m.assign(env, frame)?;
                Ok(Some(body.clone()))
            }
            Node::Letrec {
                layout,
                inits,
                body,
            } => {
                let frame = m.alloc(layout)?;
                m.set_ref(frame, 0, Some(env))?;
                m.assign(env, frame)?;
                for (i, x) in inits.iter().enumerate() {
                    let v = self.eval(m, x, env)?;
                    m.set_ref(env, i + 1, Some(v))?;
                }
                Ok(Some(body.clone()))
            }
            Node::Memv(x, data) => {
                let v = self.eval(m, x, env)?;
                let cur = self.core.constant(m, *data)?;
                let mut found = false;
                while m.tag(cur)? == tag::PAIR {
                    let hit = m.scope(|m| -> Result<bool> {
                        let d = self.core.car(m, cur)?;
                        self.core.eqv(m, v, d)
                    })?;
                    if hit {
                        found = true;
                        break;
                    }
                    self.core.advance(m, cur)?;
                }
                let b = self.core.boolean(m, found)?;
                m.assign(result, b)?;
                Ok(None)
            }
            Node::PrimCall(p, args) => {
                let base = self.args.len();
                let r = self.push_args(m, args, env).and_then(|()| {
                    let v = (PRIMS[*p as usize].f)(&mut self.core, m, &self.args[base..])?;
                    m.assign(result, v)?;
                    Ok(None)
                });
                self.args.truncate(base);
                r
            }
            Node::Call(f, args) => {
                let fv = self.eval(m, f, env)?;
                let base = self.args.len();
                let r = self
                    .push_args(m, args, env)
                    .and_then(|()| self.apply(m, fv, base, env, result));
                self.args.truncate(base);
                r
            }
        }
    }

    /// Evaluates `args` onto the argument stack.
    fn push_args(&mut self, m: &mut Mutator, args: &[Rc<Node>], env: Local) -> Result<()> {
        for a in args {
            let v = self.eval(m, a, env)?;
            self.args.push(v);
        }
        Ok(())
    }

    /// Applies `f` to the arguments `self.args[base..]`: a primitive's
    /// value goes to `result`; a closure's body is returned to continue
    /// with, its new frame stored in `env`.
    fn apply(
        &mut self,
        m: &mut Mutator,
        f: Local,
        base: usize,
        env: Local,
        result: Local,
    ) -> Result<Option<Rc<Node>>> {
        let mut f = f;
        loop {
            match m.tag(f)? {
                tag::CLOSURE => {
                    let lambda = self.core.lambdas[m.read_u64(f, 0)? as usize].clone();
                    let frame = self.bind(m, &lambda, f, base)?;
                    m.assign(env, frame)?;
                    return Ok(Some(lambda.body.clone()));
                }
                tag::PRIMITIVE => {
                    let p = m.read_u64(f, 0)? as usize;
                    self.check_arity_at(p, base)?;
                    if p == APPLY {
                        f = self.spread(m, base)?;
                        continue;
                    }
                    let v = (PRIMS[p].f)(&mut self.core, m, &self.args[base..])?;
                    m.assign(result, v)?;
                    return Ok(None);
                }
                _ => return Err(SchemeError::NotProcedure(self.core.show(m, f))),
            }
        }
    }

    /// `(apply f a ... list)`: rewrites the arguments to `a ... . list` and
    /// returns `f`.
    fn spread(&mut self, m: &mut Mutator, base: usize) -> Result<Local> {
        let f = self.args[base];
        let last = *self.args.last().ok_or_else(|| internal("apply"))?;
        let items = self
            .core
            .list_items(m, last)?
            .ok_or_else(|| self.core.wrong_type(m, "apply", "a proper list", last))?;
        let n = self.args.len();
        self.args.copy_within(base + 1..n - 1, base);
        self.args.truncate(n - 2);
        self.args.extend(items);
        Ok(f)
    }

    /// A new frame for calling `lambda` (closure `f`) with the arguments
    /// `self.args[base..]`.
    fn bind(&mut self, m: &mut Mutator, lambda: &Lambda, f: Local, base: usize) -> Result<Local> {
        let args = &self.args[base..];
        let n = args.len();
        if n < lambda.required || (!lambda.rest && n > lambda.required) {
            return Err(SchemeError::Arity {
                procedure: lambda.name.clone().unwrap_or_else(|| "#<procedure>".into()),
                expected: if lambda.rest {
                    format!("at least {}", lambda.required)
                } else {
                    lambda.required.to_string()
                },
                got: n,
            });
        }
        let frame = m.alloc(&lambda.layout)?;
        let parent = m
            .get_ref(f, 0)?
            .ok_or_else(|| internal("closure without env"))?;
        m.set_ref(frame, 0, Some(parent))?;
        for (i, &a) in args[..lambda.required].iter().enumerate() {
            m.set_ref(frame, i + 1, Some(a))?;
        }
        if lambda.rest {
            let rest = self.core.list(m, &args[lambda.required..])?;
            m.set_ref(frame, lambda.required + 1, Some(rest))?;
        }
        Ok(frame)
    }
}
