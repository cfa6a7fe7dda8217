namespace Oml.Models.ChatTemplates;

internal abstract class Node(int line, int col)
{
    public int Line { get; } = line;
    public int Col { get; } = col;
}

// ---- statements ----
internal abstract class Stmt(int line, int col) : Node(line, col);
internal sealed class TextStmt(int line, int col, string text) : Stmt(line, col) { public string Text { get; } = text; }
internal sealed class OutputStmt(int line, int col, Expr value) : Stmt(line, col) { public Expr Value { get; } = value; }
internal sealed class IfStmt(int line, int col, List<(Expr Cond, List<Stmt> Body)> branches, List<Stmt>? elseBody) : Stmt(line, col)
{
    public List<(Expr Cond, List<Stmt> Body)> Branches { get; } = branches;
    public List<Stmt>? Else { get; } = elseBody;
}
internal sealed class ForStmt(int line, int col, Target target, Expr iter, Expr? filter, List<Stmt> body, List<Stmt>? elseBody) : Stmt(line, col)
{
    public Target Target { get; } = target;
    public Expr Iter { get; } = iter;
    public Expr? Filter { get; } = filter;
    public List<Stmt> Body { get; } = body;
    public List<Stmt>? Else { get; } = elseBody;
}
internal sealed class SetStmt(int line, int col, Target target, Expr value) : Stmt(line, col)
{
    public Target Target { get; } = target;
    public Expr Value { get; } = value;
}
internal sealed class SetBlockStmt(int line, int col, Target target, List<Stmt> body, List<FilterExpr> filters) : Stmt(line, col)
{
    public Target Target { get; } = target;
    public List<Stmt> Body { get; } = body;
    /// <summary>Filters applied to the rendered body; each has a null <see cref="FilterExpr.Value"/>.</summary>
    public List<FilterExpr> Filters { get; } = filters;
}
internal sealed class MacroStmt(int line, int col, string name, List<(string Name, Expr? Default)> parameters, List<Stmt> body) : Stmt(line, col)
{
    public string Name { get; } = name;
    public List<(string Name, Expr? Default)> Parameters { get; } = parameters;
    public List<Stmt> Body { get; } = body;
}
internal sealed class BlockStmt(int line, int col, List<Stmt> body) : Stmt(line, col) { public List<Stmt> Body { get; } = body; }
internal sealed class BreakStmt(int line, int col) : Stmt(line, col);
internal sealed class ContinueStmt(int line, int col) : Stmt(line, col);

// ---- assignment targets ----
internal abstract class Target(int line, int col) : Node(line, col);
internal sealed class NameTarget(int line, int col, string name) : Target(line, col) { public string Name { get; } = name; }
internal sealed class TupleTarget(int line, int col, List<Target> items) : Target(line, col) { public List<Target> Items { get; } = items; }
internal sealed class AttrTarget(int line, int col, string name, string attr) : Target(line, col)
{
    public string Name { get; } = name;
    public string Attr { get; } = attr;
}

// ---- expressions ----
internal abstract class Expr(int line, int col) : Node(line, col);
internal sealed class ConstExpr(int line, int col, object? value) : Expr(line, col) { public object? Value { get; } = value; }
internal sealed class NameExpr(int line, int col, string name) : Expr(line, col) { public string Name { get; } = name; }
internal sealed class GetattrExpr(int line, int col, Expr obj, string attr) : Expr(line, col)
{
    public Expr Obj { get; } = obj;
    public string Attr { get; } = attr;
}
internal sealed class GetitemExpr(int line, int col, Expr obj, Expr key) : Expr(line, col)
{
    public Expr Obj { get; } = obj;
    public Expr Key { get; } = key;
}
internal sealed class SliceExpr(int line, int col, Expr obj, Expr? start, Expr? stop, Expr? step) : Expr(line, col)
{
    public Expr Obj { get; } = obj;
    public Expr? Start { get; } = start;
    public Expr? Stop { get; } = stop;
    public Expr? Step { get; } = step;
}
internal sealed class CallArgs(List<Expr> positional, List<(string Name, Expr Value)> keywords)
{
    public List<Expr> Positional { get; } = positional;
    public List<(string Name, Expr Value)> Keywords { get; } = keywords;
    public static CallArgs Empty => new([], []);
}
internal sealed class CallExpr(int line, int col, Expr fn, CallArgs args) : Expr(line, col)
{
    public Expr Fn { get; } = fn;
    public CallArgs Args { get; } = args;
}
internal sealed class FilterExpr(int line, int col, Expr? value, string name, CallArgs args) : Expr(line, col)
{
    public Expr? Value { get; } = value;
    public string Name { get; } = name;
    public CallArgs Args { get; } = args;
}
internal sealed class TestExpr(int line, int col, Expr value, string name, CallArgs args, bool negated) : Expr(line, col)
{
    public Expr Value { get; } = value;
    public string Name { get; } = name;
    public CallArgs Args { get; } = args;
    public bool Negated { get; } = negated;
}
internal sealed class UnaryExpr(int line, int col, string op, Expr operand) : Expr(line, col)
{
    public string Op { get; } = op; // "-", "+", "not"
    public Expr Operand { get; } = operand;
}
internal sealed class BinaryExpr(int line, int col, string op, Expr left, Expr right) : Expr(line, col)
{
    public string Op { get; } = op; // + - * / // % ** ~ and or
    public Expr Left { get; } = left;
    public Expr Right { get; } = right;
}
internal sealed class CompareExpr(int line, int col, Expr first, List<(string Op, Expr Right)> rest) : Expr(line, col)
{
    public Expr First { get; } = first;
    public List<(string Op, Expr Right)> Rest { get; } = rest; // == != < <= > >= in notin
}
internal sealed class CondExpr(int line, int col, Expr test, Expr then, Expr? otherwise) : Expr(line, col)
{
    public Expr Test { get; } = test;
    public Expr Then { get; } = then;
    public Expr? Else { get; } = otherwise;
}
internal sealed class ListExpr(int line, int col, List<Expr> items) : Expr(line, col) { public List<Expr> Items { get; } = items; }
internal sealed class TupleExpr(int line, int col, List<Expr> items) : Expr(line, col) { public List<Expr> Items { get; } = items; }
internal sealed class DictExpr(int line, int col, List<(Expr Key, Expr Value)> items) : Expr(line, col)
{
    public List<(Expr Key, Expr Value)> Items { get; } = items;
}
