; Helix's names for ../highlights.scm: the same patterns, with number -> constant.numeric,
; keyword.conditional -> keyword.control.conditional, function.call -> function,
; property -> variable.other.member, and no @spell (tests/test_tree_sitter.py checks that
; the two files agree).

[
  "import"
  "model"
  "block"
  "compress"
  "input"
  "output"
  "return"
  "columns"
  "tie"
  "shard"
  "repeat"
  "in"
  "as"
  "on"
  "except"
  "where"
] @keyword

[
  "if"
  "else"
] @keyword.control.conditional

(comment) @comment

(string) @string
(import_statement path: (string) @string.special.path)
(number) @constant.numeric
(ratio) @constant.numeric
(placeholder) @variable.builtin
(ellipsis) @variable.builtin

; definitions
(model_definition name: (identifier) @function)
(block_definition name: (identifier) @function)
(compress_definition name: (identifier) @function)
(compress_definition model: (identifier) @function)

; `hidden: int = 128`, `x: f32[B, T, D]`
(parameter name: (identifier) @variable.parameter)
(parameter type: (identifier) @type.builtin)
(tensor_type dtype: (identifier) @type.builtin)
(tensor_type dim: (identifier) @constant)

(input_statement name: (identifier) @variable.parameter)
(columns_statement name: (identifier) @variable)
(targets (identifier) @variable)

; calls: an op or a block; `linear(x, 10) as fc1`
(call function: (identifier) @function)
(keyword_argument name: (identifier) @variable.parameter)
(named name: (identifier) @label)
(named name: (string) @label)
(repeat index: (identifier) @variable)

(attribute attribute: (identifier) @variable.other.member)
(key_path (identifier) @variable.other.member)

(stage selector: (identifier) @function)
(stage except: (identifier) @function)

[
  "+" "-" "*" "/" "%" "**"
  "<" "<=" ">" ">=" "==" "!="
  "="
] @operator

[
  "(" ")" "[" "]" "{" "}"
] @punctuation.bracket

[
  "," "." ":"
] @punctuation.delimiter
