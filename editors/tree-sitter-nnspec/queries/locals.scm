; Scopes: each model and block has its own names; parameters, inputs, assigned
; values and a `repeat i in N` index are defined in it.
[
  (model_definition)
  (block_definition)
] @local.scope

(parameter name: (identifier) @local.definition)
(input_statement name: (identifier) @local.definition)
(targets (identifier) @local.definition)
(columns_statement name: (identifier) @local.definition)
(repeat index: (identifier) @local.definition)

(identifier) @local.reference
