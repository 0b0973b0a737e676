; Highlights for .nnspec. Capture names are tree-sitter's standard ones, as Neovim,
; Zed and the tree-sitter CLI use them; helix/highlights.scm is this file with Helix's
; names. There is no catch-all `(identifier) @variable`: the only nodes two patterns
; capture are strings (every string, then an import path or a layer name), so an
; editor that lets the first match win and one that lets the last win both give a
; string color to each.

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
] @keyword.conditional

(comment) @comment @spell

(string) @string
(import_statement path: (string) @string.special.path)
(number) @number
(ratio) @number
(placeholder) @variable.builtin
(ellipsis) @variable.builtin

; definitions
(model_definition name: (identifier) @function)
(block_definition name: (identifier) @function)
(compress_definition name: (identifier) @function)
(compress_definition model: (identifier) @function.call)

; `hidden: int = 128`, `x: f32[B, T, D]`
(parameter name: (identifier) @variable.parameter)
(parameter type: (identifier) @type.builtin)
(tensor_type dtype: (identifier) @type.builtin)
(tensor_type dim: (identifier) @constant)

(input_statement name: (identifier) @variable.parameter)
(columns_statement name: (identifier) @variable)
(targets (identifier) @variable)

; calls: an op or a block; `linear(x, 10) as fc1`
(call function: (identifier) @function.call)
(keyword_argument name: (identifier) @variable.parameter)
(named name: (identifier) @label)
(named name: (string) @label)
(repeat index: (identifier) @variable)

(attribute attribute: (identifier) @property)
(key_path (identifier) @property)

(stage selector: (identifier) @function.call)
(stage except: (identifier) @function.call)

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
