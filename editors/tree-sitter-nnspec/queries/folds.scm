; Foldable regions: a definition's body, a compression's stages, and any
; parameter list, argument list, constraint body or list literal spread over lines.
[
  (body)
  (compress_definition)
  (parameters)
  (arguments)
  (constraint_body)
  (list)
] @fold
