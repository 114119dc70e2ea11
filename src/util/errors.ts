// Errors the CLI maps to exit codes: UserError -> 1 (bad input or state), UsageError -> 2 (bad command line).
export class UserError extends Error {}
export class UsageError extends Error {}
