// Lint rules that the type checker and the layer check (.dependency-cruiser.cjs) do not cover.
// `npm run lint` runs both; `npm test` runs lint first.

import tseslint from 'typescript-eslint'

export default [
  {
    files: ['src/**/*.ts'],
    ignores: ['src/**/*.test.ts'],
    languageOptions: { parser: tseslint.parser, ecmaVersion: 2023, sourceType: 'module' },
    rules: {
      // On Node 20 both globals are getters that cost a property lookup chain per use on the hot
      // path (measured in bench/README.md, "Globals"); the imported bindings are plain references.
      'no-restricted-globals': [
        'error',
        { name: 'Buffer', message: "import { Buffer } from 'node:buffer' (the global is a slow getter on Node 20)" },
        { name: 'performance', message: "import { performance } from 'node:perf_hooks' (the global is a slow getter on Node 20)" },
      ],
    },
  },
]
