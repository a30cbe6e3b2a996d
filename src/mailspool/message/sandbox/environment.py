"""The Jinja environment every template is compiled in, from a file or over HTTP: Jinja's
immutable sandbox (no access to internals, no changes to lists and dicts), with the work
of each render bounded by its budget (budget.py).

Where the budget is spent:

- a step for each iteration of a ``{% for %}`` loop (a call inserted at the top of its
  body, and in its ``if`` filter), each call of a function or method, each filter call;
- characters for what the template makes: the operators ``* ** % +`` are intercepted
  and checked before they run (in a sandbox Jinja then also stops folding them while
  compiling, so ``'a' * 10**9`` is no longer computed by the compiler), ``~``, slices,
  ``str.format`` fields, methods and filters that grow text (checks.py), each
  value printed, and every buffer joined (the output, a macro's, a ``{% set %}``
  block's). While compiling, the constants Jinja folds share one budget.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable
from functools import update_wrapper
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.runtime import Context
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
)
from jinja2.utils import generate_lorem_ipsum
from markupsafe import Markup, escape

from mailspool.message.sandbox.budget import begin, current, end, text_size
from mailspool.message.sandbox.checks import (
    METHOD_CHECKS,
    check_add,
    check_mul,
    check_pow,
    field_size,
    lipsum_size,
    percent_size,
    result_size,
)

_STEP = f"{__name__}.loop_step"
# methods of lists and dicts that make a new one (a copy, dict.fromkeys); the others
# return parts of an existing one
_NEW = frozenset(("copy", "fromkeys"))


def loop_step() -> bool:
    """Called at the top of each loop iteration: the call (Sandbox.call) is the step."""
    return True


class _CodeGenerator(CodeGenerator):
    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # Jinja's, but through environment.checked_concat, which checks the size first
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"environment.checked_concat({func_name}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def _output_child_pre(
        self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo
    ) -> None:
        # each value printed by {{ }} goes through environment.text (or escaped_text)
        # instead of str (or escape): a list holding one long string many times is
        # small, but not once printed
        if frame.eval_ctx.volatile:
            self.write("(environment.escaped_text if context.eval_ctx.autoescape else")
            self.write(" environment.text)(")
        elif frame.eval_ctx.autoescape:
            self.write("environment.escaped_text(")
        else:
            self.write("environment.text(")
        if finalize.src is not None:
            self.write(finalize.src)

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        # a slice is taken directly, not through environment.getitem: counted after
        if not isinstance(node.arg, nodes.Slice):
            super().visit_Getitem(node, frame)
            return
        self.write("environment.sliced(")
        super().visit_Getitem(node, frame)
        self.write(")")


class _Template(jinja2.Template):
    def render(self, *args: Any, **kwargs: Any) -> str:
        # mailspool renders through template.render_field and combined.render_combined;
        # this keeps any other render inside a budget too
        token = begin()
        try:
            return super().render(*args, **kwargs)
        finally:
            end(token)


class _Formatter(SandboxedFormatter):
    """str.format in the sandbox, each field checked before it is formatted."""

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None:  # !r, !s, !a print the value
            budget = current()
            budget.need(text_size(value, budget.room()))
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        budget = current()
        budget.need(field_size(budget, value, format_spec))
        out = super().format_field(value, format_spec)
        budget.charge(len(out))
        return out


class _EscapeFormatter(_Formatter, SandboxedEscapeFormatter):
    pass


def _check_printed(value: Any) -> None:
    if not isinstance(value, (str, int, float)):
        budget = current()
        budget.need(text_size(value, budget.room()))


class Sandbox(ImmutableSandboxedEnvironment):
    """The Jinja environment of every template: the immutable sandbox, with the
    operators, loops, slices and calls that can make much work spending the render's
    budget. Takes the options of a jinja2.Environment (template.make_environment)."""

    intercepted_binops = frozenset(("*", "**", "%", "+"))
    code_generator_class = _CodeGenerator
    template_class = _Template

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in list(tree.find_all(nodes.For)):
            loop.body.insert(0, nodes.ExprStmt(_step_call(loop.lineno), lineno=loop.lineno))
            if loop.test is not None:  # {% for x in xs if test %}: each item tried
                loop.test = nodes.And(_step_call(loop.lineno), loop.test, lineno=loop.lineno)
        tree.set_environment(self)  # on the new nodes
        return tree

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        token = begin()  # what Jinja computes while compiling is bounded too
        try:
            return super()._generate(source, name, filename, defer_init)
        finally:
            end(token)

    def concat(self, parts: Iterable[str]) -> str:
        # counted before they are joined: a loop may have output one long value many times
        chunks = parts if parts.__class__ is list else [*parts]
        current().charge(sum(map(len, chunks)))
        return "".join(chunks)

    def text(self, value: Any) -> str:
        if value.__class__ is str:
            return value
        _check_printed(value)
        return str(value)

    def escaped_text(self, value: Any) -> Markup:
        if value.__class__ is not str:
            _check_printed(value)
        return escape(value)

    def checked_concat(self, join: Callable[[Iterable[Any]], str], values: tuple[Any, ...]) -> str:
        budget = current()
        room = budget.room()
        size = 0
        for v in values:
            size += len(v) if isinstance(v, str) else text_size(v, room)
        budget.need(size)
        out = join(values)
        budget.charge(len(out))
        return out

    def sliced(self, value: Any) -> Any:
        current().charge(result_size(value))
        return value

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = current()
        if operator == "*":
            check_mul(budget, left, right)
        elif operator == "**":
            check_pow(left, right)
        elif operator == "%":
            if isinstance(left, (str, bytes)):
                budget.need(percent_size(budget, left, right))
        else:
            check_add(budget, left, right)
        result = self.binop_table[operator](left, right)
        budget.charge(result_size(result))
        return result

    def call(
        __self,  # Jinja's names: a call's keyword arguments may be called self, obj
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        budget = current()
        budget.step()
        if __obj is loop_step:
            return True
        receiver = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        # a method of a string or number makes something new; so does a constructor
        new = isinstance(receiver, (str, bytes, int))
        if new:
            check = METHOD_CHECKS.get(name)
            if check is not None:
                args = check(budget, receiver, args, kwargs) or args
        elif __obj is generate_lorem_ipsum:
            budget.need(lipsum_size(args, kwargs))
            new = True
        else:
            new = isinstance(__obj, type) or name in _NEW
        result = super().call(__context, __obj, *args, **kwargs)
        if new:
            budget.charge(result_size(result))
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # Jinja's, with formatters that check each field
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) or (
            value.__name__ not in ("format", "format_map")
        ):
            return None
        f_self: Any = value.__self__
        if not isinstance(f_self, str):
            return None
        str_type: type[str] = type(f_self)
        is_format_map = value.__name__ == "format_map"
        formatter: SandboxedFormatter
        if isinstance(f_self, Markup):
            formatter = _EscapeFormatter(self, escape=f_self.escape)
        else:
            formatter = _Formatter(self)
        vformat = formatter.vformat

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs, args = args[0], ()
            return str_type(vformat(f_self, args, kwargs))

        return update_wrapper(wrapper, value)


def _step_call(lineno: int) -> nodes.Call:
    return nodes.Call(nodes.ImportedName(_STEP, lineno=lineno), [], [], None, None, lineno=lineno)
