using System.Text;

namespace Oml.Models.ChatTemplates;

internal sealed class Scope(Scope? parent)
{
    public Scope? Parent { get; } = parent;
    public Dictionary<string, object?> Vars { get; } = new(StringComparer.Ordinal);

    public bool TryGet(string name, out object? value)
    {
        for (var s = this; s != null; s = s.Parent)
            if (s.Vars.TryGetValue(name, out value)) return true;
        value = null;
        return false;
    }
}

internal enum Flow { Normal, Break, Continue }

/// <summary>Thrown by raise_exception; the interpreter turns it into <see cref="ChatTemplateRaisedException"/> with a position.</summary>
internal sealed class TemplateRaise(string message) : Exception(message);

/// <summary>A <c>{% macro %}</c>: called like a function, returns its rendered body.</summary>
internal sealed class Macro(MacroStmt def, Scope closure) : ICallable
{
    public string Name => def.Name;

    public object? Call(Interpreter interp, List<object?> args, List<(string Name, object? Value)> kwargs)
    {
        var ps = def.Parameters;
        if (args.Count > ps.Count) throw new TemplateError($"macro '{def.Name}' takes not more than {ps.Count} argument(s)");
        var scope = new Scope(closure);
        for (var i = 0; i < args.Count; i++) scope.Vars[ps[i].Name] = args[i];
        foreach (var (k, v) in kwargs)
        {
            var idx = ps.FindIndex(p => p.Name == k);
            if (idx < 0) throw new TemplateError($"macro '{def.Name}' has no argument named '{k}'");
            if (idx < args.Count) throw new TemplateError($"macro '{def.Name}' got multiple values for argument '{k}'");
            scope.Vars[k] = v;
        }
        foreach (var (name, dflt) in ps)
            if (!scope.Vars.ContainsKey(name))
                scope.Vars[name] = dflt != null ? interp.Eval(dflt, scope) : Undefined.Named(name);
        var sb = new StringBuilder();
        var flow = interp.Exec(def.Body, scope, sb);
        if (flow != Flow.Normal) throw new TemplateError("'break' or 'continue' outside of a loop");
        return sb.ToString();
    }
}

/// <summary>Tree-walking interpreter for the parsed template.</summary>
internal sealed class Interpreter(Func<DateTime> clock)
{
    public Func<DateTime> Clock { get; } = clock;

    public string Render(List<Stmt> body, Scope globals)
    {
        var sb = new StringBuilder();
        var flow = Exec(body, new Scope(globals), sb);
        if (flow != Flow.Normal) throw new ChatTemplateRuntimeException("'break' or 'continue' outside of a loop", 0, 0);
        return sb.ToString();
    }

    private static ChatTemplateException At(Exception e, Node n) => e switch
    {
        ChatTemplateException ce => ce,
        TemplateRaise r => new ChatTemplateRaisedException(r.Message, n.Line, n.Col),
        TemplateError te => new ChatTemplateRuntimeException(te.Message, n.Line, n.Col),
        OverflowException => new ChatTemplateRuntimeException("integer overflow", n.Line, n.Col, e),
        DivideByZeroException => new ChatTemplateRuntimeException("division by zero", n.Line, n.Col, e),
        _ => new ChatTemplateRuntimeException(e.Message, n.Line, n.Col, e),
    };

    public Flow Exec(List<Stmt> body, Scope scope, StringBuilder sb)
    {
        foreach (var stmt in body)
        {
            var flow = ExecOne(stmt, scope, sb);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    private Flow ExecOne(Stmt stmt, Scope scope, StringBuilder sb)
    {
        switch (stmt)
        {
            case TextStmt t:
                sb.Append(t.Text);
                return Flow.Normal;
            case OutputStmt o:
                sb.Append(Py.Str(Eval(o.Value, scope)));
                return Flow.Normal;
            case IfStmt i:
                foreach (var (cond, b) in i.Branches)
                    if (Py.Truthy(Eval(cond, scope))) return Exec(b, scope, sb);
                return i.Else != null ? Exec(i.Else, scope, sb) : Flow.Normal;
            case ForStmt f:
                ExecFor(f, scope, sb);
                return Flow.Normal;
            case SetStmt s:
                Assign(s.Target, Eval(s.Value, scope), scope);
                return Flow.Normal;
            case SetBlockStmt s:
            {
                var inner = new StringBuilder();
                if (Exec(s.Body, new Scope(scope), inner) != Flow.Normal) throw At(new TemplateError("'break' or 'continue' inside a set block"), s);
                object? value = inner.ToString();
                foreach (var flt in s.Filters) value = ApplyFilter(flt, value, scope);
                Assign(s.Target, value, scope);
                return Flow.Normal;
            }
            case MacroStmt m:
                scope.Vars[m.Name] = new Macro(m, scope);
                return Flow.Normal;
            case BlockStmt b:
                return Exec(b.Body, scope, sb);
            case BreakStmt:
                return Flow.Break;
            case ContinueStmt:
                return Flow.Continue;
            default:
                throw new ChatTemplateRuntimeException($"unsupported statement {stmt.GetType().Name}", stmt.Line, stmt.Col);
        }
    }

    private void ExecFor(ForStmt f, Scope scope, StringBuilder sb)
    {
        List<object?> items;
        try { items = Builtins.Iterate(Eval(f.Iter, scope)); }
        catch (Exception e) when (e is not ChatTemplateException) { throw At(e, f.Iter); }
        if (f.Filter != null)
        {
            var kept = new List<object?>();
            foreach (var item in items)
            {
                var fs = new Scope(scope);
                Assign(f.Target, item, fs);
                if (Py.Truthy(Eval(f.Filter, fs))) kept.Add(item);
            }
            items = kept;
        }
        if (items.Count == 0)
        {
            if (f.Else != null) Exec(f.Else, new Scope(scope), sb);
            return;
        }
        var loop = new LoopContext(items);
        for (var i = 0; i < items.Count; i++)
        {
            loop.Index0 = i;
            var s = new Scope(scope);
            s.Vars["loop"] = loop;
            Assign(f.Target, items[i], s);
            if (Exec(f.Body, s, sb) == Flow.Break) break;
        }
    }

    private static void Assign(Target target, object? value, Scope scope)
    {
        try
        {
            switch (target)
            {
                case NameTarget n:
                    scope.Vars[n.Name] = value;
                    break;
                case TupleTarget t:
                {
                    var items = value is Undefined u ? throw new TemplateError(u.Hint) : Builtins.Iterate(value);
                    if (items.Count != t.Items.Count)
                        throw new TemplateError(items.Count > t.Items.Count
                            ? $"too many values to unpack (expected {t.Items.Count})"
                            : $"not enough values to unpack (expected {t.Items.Count}, got {items.Count})");
                    for (var i = 0; i < items.Count; i++) Assign(t.Items[i], items[i], scope);
                    break;
                }
                case AttrTarget a:
                {
                    if (!scope.TryGet(a.Name, out var obj)) throw new TemplateError($"'{a.Name}' is undefined");
                    if (obj is not Namespace ns) throw new TemplateError("cannot assign attribute on non-namespace object");
                    ns.Attrs[a.Attr] = value;
                    break;
                }
            }
        }
        catch (Exception e) when (e is not ChatTemplateException) { throw At(e, target); }
    }

    private object? ApplyFilter(FilterExpr f, object? value, Scope scope)
    {
        var (pos, kw) = EvalArgs(f.Args, scope);
        return Builtins.Filter(this, f.Name, value, new Args(f.Name, pos, kw));
    }

    private (List<object?>, List<(string, object?)>) EvalArgs(CallArgs a, Scope scope)
    {
        var pos = new List<object?>(a.Positional.Count);
        foreach (var e in a.Positional) pos.Add(Eval(e, scope));
        var kw = new List<(string, object?)>(a.Keywords.Count);
        foreach (var (k, e) in a.Keywords) kw.Add((k, Eval(e, scope)));
        return (pos, kw);
    }

    public object? Eval(Expr e, Scope scope)
    {
        try { return EvalCore(e, scope); }
        catch (Exception ex) when (ex is not ChatTemplateException) { throw At(ex, e); }
    }

    private object? EvalCore(Expr e, Scope scope)
    {
        switch (e)
        {
            case ConstExpr c:
                return c.Value;
            case NameExpr n:
                return scope.TryGet(n.Name, out var v) ? v : Undefined.Named(n.Name);
            case GetattrExpr g:
                return Builtins.GetAttr(Eval(g.Obj, scope), g.Attr);
            case GetitemExpr g:
            {
                var obj = Eval(g.Obj, scope);
                return Builtins.GetItem(obj, Eval(g.Key, scope));
            }
            case SliceExpr s:
            {
                var obj = Eval(s.Obj, scope);
                object? Opt(Expr? x) => x == null ? null : Eval(x, scope);
                return Builtins.Slice(obj, Opt(s.Start), Opt(s.Stop), Opt(s.Step));
            }
            case CallExpr c:
            {
                var fn = Eval(c.Fn, scope);
                var (pos, kw) = EvalArgs(c.Args, scope);
                return fn switch
                {
                    Undefined u => throw new TemplateError(u.Hint),
                    ICallable callable => callable.Call(this, pos, kw),
                    _ => throw new TemplateError($"'{Py.TypeName(fn)}' object is not callable"),
                };
            }
            case FilterExpr f:
                return ApplyFilter(f, Eval(f.Value!, scope), scope);
            case TestExpr t:
            {
                var value = Eval(t.Value, scope);
                var (pos, kw) = EvalArgs(t.Args, scope);
                return Builtins.Test(t.Name, value, new Args(t.Name, pos, kw)) != t.Negated;
            }
            case UnaryExpr u:
            {
                var x = Eval(u.Operand, scope);
                return u.Op switch
                {
                    "not" => !Py.Truthy(x),
                    "-" => x switch
                    {
                        long l => (object)checked(-l),
                        double d => -d,
                        bool b => b ? -1L : 0L,
                        Undefined ud => throw new TemplateError(ud.Hint),
                        _ => throw new TemplateError($"bad operand type for unary -: '{Py.TypeName(x)}'"),
                    },
                    _ => x switch
                    {
                        long or double => x,
                        bool b => (object)(b ? 1L : 0L),
                        Undefined ud => throw new TemplateError(ud.Hint),
                        _ => throw new TemplateError($"bad operand type for unary +: '{Py.TypeName(x)}'"),
                    },
                };
            }
            case BinaryExpr b:
            {
                var left = Eval(b.Left, scope);
                if (b.Op == "and") return Py.Truthy(left) ? Eval(b.Right, scope) : left;
                if (b.Op == "or") return Py.Truthy(left) ? left : Eval(b.Right, scope);
                return Builtins.BinOp(b.Op, left, Eval(b.Right, scope));
            }
            case CompareExpr c:
            {
                var left = Eval(c.First, scope);
                foreach (var (op, re) in c.Rest)
                {
                    var right = Eval(re, scope);
                    if (!Builtins.CompareOp(op, left, right)) return false;
                    left = right;
                }
                return true;
            }
            case CondExpr c:
                if (Py.Truthy(Eval(c.Test, scope))) return Eval(c.Then, scope);
                return c.Else != null
                    ? Eval(c.Else, scope)
                    : new Undefined($"the inline if-expression on line {c.Line} evaluated to false and no else section was defined");
            case ListExpr l:
            {
                var list = new List<object?>(l.Items.Count);
                foreach (var x in l.Items) list.Add(Eval(x, scope));
                return list;
            }
            case TupleExpr t:
            {
                var arr = new object?[t.Items.Count];
                for (var i = 0; i < arr.Length; i++) arr[i] = Eval(t.Items[i], scope);
                return arr;
            }
            case DictExpr d:
            {
                var dict = new PyDict();
                foreach (var (ke, ve) in d.Items)
                {
                    var k = Eval(ke, scope);
                    dict[Builtins.HashableKey(k)] = Eval(ve, scope);
                }
                return dict;
            }
            default:
                throw new TemplateError($"unsupported expression {e.GetType().Name}");
        }
    }
}
