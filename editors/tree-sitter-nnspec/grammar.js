/**
 * Tree-sitter grammar for .nnspec model specs (specc).
 *
 * It follows grammar/nnspec.lark, the compiler's grammar, rule for rule. Where the
 * two differ, this one is the more permissive: an editor parser must keep going
 * through half-typed text, and specc itself reports every error.
 *
 * Newlines. Statements end at a newline, except inside (...) and [...], where
 * newlines are ignored, as in Python. specc's post-lexer drops those newlines by
 * counting brackets; here no external scanner is needed: a newline is both an
 * extra (skipped) and the `_newline` token, and tree-sitter's lexer only produces
 * `_newline` in parse states where it is valid, i.e. right after a complete
 * statement, definition, stage or constraint. After `(`, `[`, `,`, `{` or an
 * operator it is not valid, so it is skipped like any other blank. That also
 * covers blank lines and comment-only lines, which specc collapses.
 *
 * One consequence: a line that ends in an operator, `y = x +`, goes on on the next
 * line here, where specc reports the newline as unexpected.
 *
 * Another difference: a ratio is one token, `2:4`, so `x[1:2]` reads as an index
 * by the ratio 1:2 (specc reads it the same way: RATIO has priority there too),
 * and `x[42:1e-5]`, which specc reads as a slice, reads as the ratio 42:1
 * followed by an error.
 */

const PREC = {
  conditional: 1,
  compare: 2,
  sum: 3,
  product: 4,
  unary: 5,
  power: 6,
  postfix: 7,
};

function commaSep1(rule) {
  return seq(rule, repeat(seq(',', rule)));
}

// items separated by newlines: `item (NL item)* NL?`
function lines(rule, newline) {
  return seq(repeat(seq(rule, newline)), optional(rule));
}

module.exports = grammar({
  name: 'nnspec',

  extras: $ => [/[ \t\f\r\n]/, $.comment],

  word: $ => $.identifier,

  conflicts: $ => [],

  rules: {
    source_file: $ => lines($._item, $._newline),

    _item: $ => choice(
      $.import_statement,
      $.model_definition,
      $.block_definition,
      $.compress_definition,
    ),

    import_statement: $ => seq('import', field('path', $.string)),

    // ------------------------------------------------------------ definitions
    model_definition: $ => seq(
      'model', field('name', $.identifier), field('parameters', $.parameters), field('body', $.body),
    ),

    block_definition: $ => seq(
      'block', field('name', $.identifier), field('parameters', $.parameters), field('body', $.body),
    ),

    parameters: $ => seq('(', optional(seq(commaSep1($.parameter), optional(','))), ')'),

    // `hidden: int = 128`, `x: f32[B, T, D]` (a typed tensor parameter), `x`; a model's parameter may be a
    // choice point of a search space: `width: int in [64, 128] = 64 where width % heads == 0`
    parameter: $ => seq(
      field('name', $.identifier),
      optional(seq(':', field('type', choice($.identifier, $.tensor_type)))),
      optional(field('choice', $.choice)),
      optional(seq('=', field('default', $._expression))),
      optional(seq('where', field('condition', $._expression))),
    ),

    // `in [64, 128]`, `in {relu, gelu}`, `in 2..12`, `~ uniform(0.0, 0.3)` (specc/space.py). NOTE: the
    // committed src/parser.c predates choices and was not regenerated (no tree-sitter CLI where they were
    // added); `2..12` also needs `number` to stop before `..` (specc's lexer uses a lookahead, which
    // tree-sitter's regexes lack: write `2 .. 12`, or give the grammar an external scanner)
    choice: $ => choice(
      seq('in', field('values', $._expression), optional(seq('..', field('high', $._expression)))),
      seq('in', '{', optional(seq(commaSep1($._expression), optional(','))), '}'),
      seq('~', field('distribution', $.call)),
    ),

    body: $ => seq('{', lines($._statement, $._newline), '}'),

    _statement: $ => choice(
      $.input_statement,
      $.assignment,
      $.output_statement,
      $.return_statement,
      $.columns_statement,
      $.tie_statement,
      $.shard_statement,
    ),

    input_statement: $ => seq('input', field('name', $.identifier), ':', field('type', $.tensor_type)),

    // `f32[B, 784]`
    tensor_type: $ => seq(
      field('dtype', $.identifier),
      '[', optional(seq(commaSep1(field('dim', $._expression)), optional(','))), ']',
    ),

    assignment: $ => seq(field('targets', $.targets), '=', field('value', $._expression)),

    targets: $ => commaSep1($.identifier),

    output_statement: $ => seq('output', field('targets', $.targets), optional(seq('=', field('value', $._expression)))),

    return_statement: $ => seq('return', commaSep1(field('value', $._expression))),

    columns_statement: $ => seq(
      'columns', '(', commaSep1(field('name', $.identifier)), ')', '=', field('value', $._expression),
    ),

    // `tie lm_head.weight = transformer.wte.weight`, `tie "h.0.attn.weight" = ...`
    tie_statement: $ => seq('tie', field('left', $._tie_key), '=', field('right', $._tie_key)),

    _tie_key: $ => choice($.string, $.key_path),

    // `shard gate_proj, up_proj = colwise`: the tensor-parallel style of layers of this block or model
    shard_statement: $ => seq(
      'shard', commaSep1(field('layer', $._tie_key)), '=', field('style', $.identifier),
    ),

    key_path: $ => seq($.identifier, repeat(seq('.', $.identifier))),

    // ------------------------------------------------------------ compression
    compress_definition: $ => seq(
      'compress', field('name', $.identifier), '=', field('model', $.identifier),
      '{', lines($.stage, $._newline), '}',
    ),

    // `lowrank(rank=32) on linear except "head" where out_features >= 128`
    stage: $ => seq(
      field('transform', $.call),
      'on', field('selector', $._selector),
      repeat(seq('except', field('except', $._selector))),
      optional(seq('where', field('condition', $._expression))),
    ),

    _selector: $ => choice($.string, $.identifier),

    // ------------------------------------------------------------ expressions
    _expression: $ => choice(
      $.conditional_expression,
      $.comparison,
      $.binary_expression,
      $.unary_expression,
      $._postfix,
    ),

    // `2 if i == 0 else 1`
    conditional_expression: $ => prec.right(PREC.conditional, seq(
      field('consequence', $._expression), 'if', field('condition', $._expression),
      'else', field('alternative', $._expression),
    )),

    comparison: $ => prec.left(PREC.compare, seq(
      field('left', $._expression),
      field('operator', choice('<=', '>=', '<', '>', '==', '!=')),
      field('right', $._expression),
    )),

    binary_expression: $ => choice(
      ...[['+', PREC.sum], ['-', PREC.sum], ['*', PREC.product], ['/', PREC.product], ['%', PREC.product]]
        .map(([op, p]) => prec.left(p, seq(
          field('left', $._expression), field('operator', op), field('right', $._expression),
        ))),
      // `**` binds tighter than a unary minus on its left and is right-associative:
      // `-x ** 2` is `-(x ** 2)`, `a ** b ** c` is `a ** (b ** c)`, `2 ** -1` is 0.5
      prec.right(PREC.power, seq(
        field('left', $._postfix), field('operator', '**'), field('right', choice($.unary_expression, $._postfix, $.binary_expression)),
      )),
    ),

    unary_expression: $ => prec(PREC.unary, seq(field('operator', '-'), field('operand', $._expression))),

    _postfix: $ => choice(
      $.attribute,
      $.index,
      $.named,
      $.call,
      $.repeat,
      $._atom,
    ),

    // `h.pixels`
    attribute: $ => prec(PREC.postfix, seq(field('object', $._postfix), '.', field('attribute', $.identifier))),

    // `x[:, 0]`, `x[..., 1:]`, `x[::2]`
    index: $ => prec(PREC.postfix, seq(
      field('value', $._postfix),
      '[', commaSep1(field('subscript', choice($._expression, $.slice))), optional(','), ']',
    )),

    slice: $ => seq(
      optional(field('start', $._expression)), ':', optional(field('stop', $._expression)),
      optional(seq(':', optional(field('step', $._expression)))),
    ),

    // `conv2d(x, 64, 3) as conv1`, `attention_block(h) as "attention"`
    named: $ => prec(PREC.postfix, seq(field('value', $._postfix), 'as', field('name', choice($.identifier, $.string)))),

    // `linear(x, 10)`, `f(x, dim=-1) { rows <= 64 }`
    call: $ => prec.right(seq(
      field('function', $.identifier),
      field('arguments', $.arguments),
      optional(field('constraints', $.constraint_body)),
    )),

    // `repeat n_layer { gpt2_block(_, causal) } (x)`, `repeat i in 2 { f(_, i) } (x)`
    repeat: $ => seq(
      'repeat',
      optional(seq(field('index', $.identifier), 'in')),
      field('count', $._expression),
      '{', field('body', $._expression), optional($._newline), '}',
      field('arguments', $.arguments),
    ),

    arguments: $ => seq('(', optional(seq(commaSep1(choice($._expression, $.keyword_argument)), optional(','))), ')'),

    keyword_argument: $ => seq(field('name', $.identifier), '=', field('value', $._expression)),

    constraint_body: $ => seq('{', lines(field('constraint', $._expression), $._newline), '}'),

    _atom: $ => choice(
      $.number,
      $.ratio,
      $.string,
      $.identifier,
      $.placeholder,
      $.ellipsis,
      $.parenthesized_expression,
      $.list,
    ),

    parenthesized_expression: $ => seq('(', $._expression, ')'),

    list: $ => seq('[', optional(seq(commaSep1($._expression), optional(','))), ']'),

    placeholder: _ => '_',

    ellipsis: _ => '...',

    number: _ => /([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?/,

    // `2:4`, an N:M sparsity pattern
    ratio: _ => token(prec(2, /[0-9]+:[0-9]+/)),

    string: _ => /"[^"\n]*"/,

    identifier: _ => /[A-Za-z][A-Za-z0-9_]*|_[A-Za-z0-9_]+/,

    comment: _ => token(seq('//', /[^\n]*/)),

    _newline: _ => /\r?\n/,
  },
});
