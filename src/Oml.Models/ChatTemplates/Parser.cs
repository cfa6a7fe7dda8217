namespace Oml.Models.ChatTemplates;

/// <summary>Recursive-descent parser for the Jinja2 subset, following Jinja2's own grammar and operator precedence.</summary>
internal sealed class Parser
{
    private readonly List<Token> _t;
    private int _i;

    private Parser(List<Token> tokens) => _t = tokens;

    public static List<Stmt> Parse(string source)
    {
        var p = new Parser(Lexer.Tokenize(source));
        var body = p.ParseBody([], out var endTag);
        if (endTag != null) throw Error($"unexpected '{endTag.Value}'", endTag);
        return body;
    }

    private Token Cur => _t[_i];
    private Token Peek(int k = 1) => _t[Math.Min(_i + k, _t.Count - 1)];
    private Token Next() => _t[_i++];

    private static ChatTemplateSyntaxException Error(string msg, Token at) => new(msg, at.Line, at.Column);

    private Token ExpectOp(string op)
    {
        if (!Cur.IsOp(op)) throw Error($"expected '{op}', got {Cur}", Cur);
        return Next();
    }

    private Token ExpectName(string? name = null)
    {
        if (Cur.Kind != TokenKind.Name || (name != null && Cur.Value != name))
            throw Error(name != null ? $"expected '{name}', got {Cur}" : $"expected a name, got {Cur}", Cur);
        return Next();
    }

    private void ExpectBlockEnd()
    {
        if (Cur.Kind != TokenKind.BlockEnd) throw Error($"expected end of statement '%}}', got {Cur}", Cur);
        Next();
    }

    /// <summary>Parses statements until a block tag whose name is in <paramref name="endTags"/> (returned, consumed up to the name).</summary>
    private List<Stmt> ParseBody(string[] endTags, out Token? endTag)
    {
        var body = new List<Stmt>();
        while (true)
        {
            var tok = Cur;
            switch (tok.Kind)
            {
                case TokenKind.Eof:
                    if (endTags.Length > 0)
                        throw Error($"unexpected end of template: expected {string.Join(" or ", endTags.Select(e => $"'{e}'"))}", tok);
                    endTag = null;
                    return body;
                case TokenKind.Text:
                    Next();
                    body.Add(new TextStmt(tok.Line, tok.Column, tok.Value));
                    break;
                case TokenKind.VarBegin:
                {
                    Next();
                    var e = ParseTuple(true);
                    if (Cur.Kind != TokenKind.VarEnd) throw Error($"expected end of print statement '}}}}', got {Cur}", Cur);
                    Next();
                    body.Add(new OutputStmt(tok.Line, tok.Column, e));
                    break;
                }
                case TokenKind.BlockBegin:
                {
                    Next();
                    var name = Cur;
                    if (name.Kind != TokenKind.Name) throw Error($"expected a statement name, got {name}", name);
                    if (Array.IndexOf(endTags, name.Value) >= 0)
                    {
                        Next();
                        endTag = name;
                        return body;
                    }
                    body.Add(ParseStatement());
                    break;
                }
                default:
                    throw Error($"unexpected {tok}", tok);
            }
        }
    }

    private Stmt ParseStatement()
    {
        var tok = Next();
        switch (tok.Value)
        {
            case "if": return ParseIf(tok);
            case "for": return ParseFor(tok);
            case "set": return ParseSet(tok);
            case "macro": return ParseMacro(tok);
            case "break": ExpectBlockEnd(); return new BreakStmt(tok.Line, tok.Column);
            case "continue": ExpectBlockEnd(); return new ContinueStmt(tok.Line, tok.Column);
            case "generation":
            {
                // transformers' AssistantTracker extension: {% generation %}...{% endgeneration %} renders its body
                ExpectBlockEnd();
                var body = ParseBody(["endgeneration"], out _);
                ExpectBlockEnd();
                return new BlockStmt(tok.Line, tok.Column, body);
            }
            case "endif" or "endfor" or "endset" or "endmacro" or "else" or "elif" or "endgeneration":
                throw Error($"unexpected '{tok.Value}' (no matching opening statement)", tok);
            default:
                throw Error($"unsupported statement '{tok.Value}'", tok);
        }
    }

    private Stmt ParseIf(Token tok)
    {
        var branches = new List<(Expr, List<Stmt>)>();
        List<Stmt>? elseBody = null;
        var cond = ParseTuple(true);
        ExpectBlockEnd();
        while (true)
        {
            var body = ParseBody(["elif", "else", "endif"], out var end);
            branches.Add((cond, body));
            if (end!.Value == "elif") { cond = ParseTuple(true); ExpectBlockEnd(); continue; }
            if (end.Value == "else")
            {
                ExpectBlockEnd();
                elseBody = ParseBody(["endif"], out _);
            }
            ExpectBlockEnd();
            return new IfStmt(tok.Line, tok.Column, branches, elseBody);
        }
    }

    private Stmt ParseFor(Token tok)
    {
        var target = ParseAssignTarget(allowTuple: true, allowAttr: false);
        ExpectName("in");
        var iter = ParseTuple(false);
        Expr? filter = null;
        if (Cur.IsName("if")) { Next(); filter = ParseExpression(); }
        if (Cur.IsName("recursive")) throw Error("recursive for loops are not supported", Cur);
        ExpectBlockEnd();
        var body = ParseBody(["endfor", "else"], out var end);
        List<Stmt>? elseBody = null;
        if (end!.Value == "else") { ExpectBlockEnd(); elseBody = ParseBody(["endfor"], out _); }
        ExpectBlockEnd();
        return new ForStmt(tok.Line, tok.Column, target, iter, filter, body, elseBody);
    }

    private Stmt ParseSet(Token tok)
    {
        var target = ParseAssignTarget(allowTuple: true, allowAttr: true);
        if (Cur.IsOp("="))
        {
            Next();
            var value = ParseTuple(true);
            ExpectBlockEnd();
            return new SetStmt(tok.Line, tok.Column, target, value);
        }
        var filters = new List<FilterExpr>();
        while (Cur.IsOp("|")) filters.Add(ParseFilter(null));
        ExpectBlockEnd();
        var body = ParseBody(["endset"], out _);
        ExpectBlockEnd();
        return new SetBlockStmt(tok.Line, tok.Column, target, body, filters);
    }

    private Stmt ParseMacro(Token tok)
    {
        var name = ExpectName().Value;
        ExpectOp("(");
        var ps = new List<(string, Expr?)>();
        while (!Cur.IsOp(")"))
        {
            if (ps.Count > 0) ExpectOp(",");
            if (Cur.IsOp(")")) break;
            var pn = ExpectName().Value;
            Expr? def = null;
            if (Cur.IsOp("=")) { Next(); def = ParseExpression(); }
            else if (ps.Count > 0 && ps[^1].Item2 != null) throw Error("non-default argument follows default argument", Cur);
            ps.Add((pn, def));
        }
        Next();
        ExpectBlockEnd();
        var body = ParseBody(["endmacro"], out _);
        if (Cur.Kind == TokenKind.Name && Cur.Value == name) Next();
        ExpectBlockEnd();
        return new MacroStmt(tok.Line, tok.Column, name, ps, body);
    }

    private Target ParseAssignTarget(bool allowTuple, bool allowAttr)
    {
        var first = ParseSingleTarget(allowAttr);
        if (!allowTuple || !Cur.IsOp(",")) return first;
        var items = new List<Target> { first };
        while (Cur.IsOp(","))
        {
            Next();
            if (Cur.Kind != TokenKind.Name) break;
            items.Add(ParseSingleTarget(false));
        }
        return new TupleTarget(first.Line, first.Col, items);
    }

    private Target ParseSingleTarget(bool allowAttr)
    {
        if (Cur.IsOp("("))
        {
            var open = Next();
            var inner = ParseAssignTarget(true, false);
            ExpectOp(")");
            return inner is TupleTarget ? inner : new TupleTarget(open.Line, open.Column, [inner]);
        }
        var name = ExpectName();
        if (allowAttr && Cur.IsOp("."))
        {
            Next();
            var attr = ExpectName();
            return new AttrTarget(name.Line, name.Column, name.Value, attr.Value);
        }
        if (name.Value is "true" or "false" or "none" or "True" or "False" or "None")
            throw Error($"cannot assign to '{name.Value}'", name);
        return new NameTarget(name.Line, name.Column, name.Value);
    }

    // ---- expressions ----

    /// <summary>Like Jinja's parse_tuple: an expression, or a comma-separated tuple without parentheses.</summary>
    private Expr ParseTuple(bool withCondExpr)
    {
        var first = Cur;
        var items = new List<Expr>();
        var isTuple = false;
        while (true)
        {
            if (items.Count > 0) ExpectOp(",");
            if (IsTupleEnd()) break;
            items.Add(withCondExpr ? ParseExpression() : ParseOr());
            if (Cur.IsOp(",")) isTuple = true; else break;
        }
        if (!isTuple)
        {
            if (items.Count == 0) throw Error($"expected an expression, got {Cur}", Cur);
            return items[0];
        }
        return new TupleExpr(first.Line, first.Column, items);
    }

    private bool IsTupleEnd() => Cur.Kind is TokenKind.BlockEnd or TokenKind.VarEnd or TokenKind.Eof
                                 || Cur.IsOp(")") || Cur.IsName("in") || Cur.IsName("if") || Cur.IsOp("=");

    private Expr ParseExpression()
    {
        var expr = ParseOr();
        while (Cur.IsName("if"))
        {
            var tok = Next();
            var test = ParseOr();
            Expr? otherwise = null;
            if (Cur.IsName("else")) { Next(); otherwise = ParseExpression(); }
            expr = new CondExpr(tok.Line, tok.Column, test, expr, otherwise);
        }
        return expr;
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (Cur.IsName("or")) { var t = Next(); left = new BinaryExpr(t.Line, t.Column, "or", left, ParseAnd()); }
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (Cur.IsName("and")) { var t = Next(); left = new BinaryExpr(t.Line, t.Column, "and", left, ParseNot()); }
        return left;
    }

    private Expr ParseNot()
    {
        if (Cur.IsName("not")) { var t = Next(); return new UnaryExpr(t.Line, t.Column, "not", ParseNot()); }
        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            if (Cur.Kind == TokenKind.Op && Cur.Value is "==" or "!=" or "<" or "<=" or ">" or ">=")
            {
                var op = Next().Value;
                rest.Add((op, ParseMath1()));
            }
            else if (Cur.IsName("in")) { Next(); rest.Add(("in", ParseMath1())); }
            else if (Cur.IsName("not") && Peek().IsName("in")) { Next(); Next(); rest.Add(("notin", ParseMath1())); }
            else break;
        }
        return rest.Count == 0 ? first : new CompareExpr(first.Line, first.Col, first, rest);
    }

    private Expr ParseMath1()
    {
        var left = ParseConcat();
        while (Cur.IsOp("+") || Cur.IsOp("-")) { var t = Next(); left = new BinaryExpr(t.Line, t.Column, t.Value, left, ParseConcat()); }
        return left;
    }

    private Expr ParseConcat()
    {
        var left = ParseMath2();
        while (Cur.IsOp("~")) { var t = Next(); left = new BinaryExpr(t.Line, t.Column, "~", left, ParseMath2()); }
        return left;
    }

    private Expr ParseMath2()
    {
        var left = ParsePow();
        while (Cur.Kind == TokenKind.Op && Cur.Value is "*" or "/" or "//" or "%")
        {
            var t = Next();
            left = new BinaryExpr(t.Line, t.Column, t.Value, left, ParsePow());
        }
        return left;
    }

    private Expr ParsePow()
    {
        var left = ParseUnary(true);
        while (Cur.IsOp("**")) { var t = Next(); left = new BinaryExpr(t.Line, t.Column, "**", left, ParseUnary(true)); }
        return left;
    }

    private Expr ParseUnary(bool withFilter)
    {
        Expr node;
        if (Cur.IsOp("-") || Cur.IsOp("+"))
        {
            var t = Next();
            node = new UnaryExpr(t.Line, t.Column, t.Value, ParseUnary(false));
        }
        else node = ParsePrimary();
        node = ParsePostfix(node);
        if (withFilter) node = ParseFilterExpr(node);
        return node;
    }

    private Expr ParsePrimary()
    {
        var t = Cur;
        switch (t.Kind)
        {
            case TokenKind.Name:
                Next();
                return t.Value switch
                {
                    "true" or "True" => new ConstExpr(t.Line, t.Column, true),
                    "false" or "False" => new ConstExpr(t.Line, t.Column, false),
                    "none" or "None" => new ConstExpr(t.Line, t.Column, null),
                    _ => new NameExpr(t.Line, t.Column, t.Value),
                };
            case TokenKind.String:
            {
                Next();
                var s = (string)t.Literal!;
                while (Cur.Kind == TokenKind.String) s += (string)Next().Literal!;
                return new ConstExpr(t.Line, t.Column, s);
            }
            case TokenKind.Integer:
            case TokenKind.Float:
                Next();
                return new ConstExpr(t.Line, t.Column, t.Literal);
            case TokenKind.Op when t.Value == "(":
            {
                Next();
                if (Cur.IsOp(")")) { Next(); return new TupleExpr(t.Line, t.Column, []); }
                var e = ParseTuple(true);
                ExpectOp(")");
                return e;
            }
            case TokenKind.Op when t.Value == "[":
            {
                Next();
                var items = new List<Expr>();
                while (!Cur.IsOp("]"))
                {
                    if (items.Count > 0) ExpectOp(",");
                    if (Cur.IsOp("]")) break;
                    items.Add(ParseExpression());
                }
                Next();
                return new ListExpr(t.Line, t.Column, items);
            }
            case TokenKind.Op when t.Value == "{":
            {
                Next();
                var items = new List<(Expr, Expr)>();
                while (!Cur.IsOp("}"))
                {
                    if (items.Count > 0) ExpectOp(",");
                    if (Cur.IsOp("}")) break;
                    var k = ParseExpression();
                    ExpectOp(":");
                    items.Add((k, ParseExpression()));
                }
                Next();
                return new DictExpr(t.Line, t.Column, items);
            }
            default:
                throw Error($"unexpected {t} in expression", t);
        }
    }

    private Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            var t = Cur;
            if (t.IsOp("."))
            {
                Next();
                var a = Next();
                if (a.Kind == TokenKind.Name) node = new GetattrExpr(t.Line, t.Column, node, a.Value);
                else if (a.Kind == TokenKind.Integer) node = new GetitemExpr(t.Line, t.Column, node, new ConstExpr(a.Line, a.Column, a.Literal));
                else throw Error($"expected an attribute name after '.', got {a}", a);
            }
            else if (t.IsOp("[")) node = ParseSubscript(node);
            else if (t.IsOp("(")) node = new CallExpr(t.Line, t.Column, node, ParseCallArgs());
            else return node;
        }
    }

    private Expr ParseSubscript(Expr node)
    {
        var open = ExpectOp("[");
        Expr? Part() => Cur.IsOp(":") || Cur.IsOp("]") ? null : ParseExpression();
        var start = Part();
        if (Cur.IsOp("]"))
        {
            Next();
            if (start == null) throw Error("expected a subscript expression", open);
            return new GetitemExpr(open.Line, open.Column, node, start);
        }
        if (Cur.IsOp(","))
            throw Error("tuple subscripts are not supported", Cur);
        ExpectOp(":");
        var stop = Part();
        Expr? step = null;
        if (Cur.IsOp(":")) { Next(); step = Part(); }
        ExpectOp("]");
        return new SliceExpr(open.Line, open.Column, node, start, stop, step);
    }

    private CallArgs ParseCallArgs()
    {
        ExpectOp("(");
        var pos = new List<Expr>();
        var kw = new List<(string, Expr)>();
        while (!Cur.IsOp(")"))
        {
            if (pos.Count + kw.Count > 0) ExpectOp(",");
            if (Cur.IsOp(")")) break;
            if (Cur.IsOp("*") || Cur.IsOp("**")) throw Error("*args / **kwargs in calls are not supported", Cur);
            if (Cur.Kind == TokenKind.Name && Peek().IsOp("="))
            {
                var k = Next().Value;
                Next();
                kw.Add((k, ParseExpression()));
            }
            else
            {
                if (kw.Count > 0) throw Error("positional argument follows keyword argument", Cur);
                pos.Add(ParseExpression());
            }
        }
        Next();
        return new CallArgs(pos, kw);
    }

    private Expr ParseFilterExpr(Expr node)
    {
        while (true)
        {
            if (Cur.IsOp("|")) node = ParseFilter(node);
            else if (Cur.IsName("is")) node = ParseTest(node);
            else if (Cur.IsOp("(")) { var t = Cur; node = new CallExpr(t.Line, t.Column, node, ParseCallArgs()); }
            else return node;
        }
    }

    private FilterExpr ParseFilter(Expr? node)
    {
        ExpectOp("|");
        var name = ExpectName();
        var full = name.Value;
        while (Cur.IsOp(".")) { Next(); full += "." + ExpectName().Value; }
        if (!Builtins.FilterNames.Contains(full)) throw Error($"unsupported filter '{full}'", name);
        var args = Cur.IsOp("(") ? ParseCallArgs() : CallArgs.Empty;
        return new FilterExpr(name.Line, name.Column, node, full, args);
    }

    private Expr ParseTest(Expr node)
    {
        var isTok = ExpectName("is");
        var negated = false;
        if (Cur.IsName("not")) { Next(); negated = true; }
        var name = ExpectName();
        var full = name.Value;
        while (Cur.IsOp(".")) { Next(); full += "." + ExpectName().Value; }
        if (!Builtins.TestNames.Contains(full)) throw Error($"unsupported test '{full}'", name);
        CallArgs args;
        if (Cur.IsOp("(")) args = ParseCallArgs();
        else if ((Cur.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float || Cur.IsOp("[") || Cur.IsOp("{"))
                 && !(Cur.IsName("else") || Cur.IsName("or") || Cur.IsName("and") || Cur.IsName("if") || Cur.IsName("in") || Cur.IsName("not") || Cur.IsName("is")))
        {
            var arg = ParsePostfix(ParsePrimary());
            args = new CallArgs([arg], []);
        }
        else args = CallArgs.Empty;
        return new TestExpr(isTok.Line, isTok.Column, node, full, args, negated);
    }
}
