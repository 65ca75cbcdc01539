package ledger

const helperEnv = "LEDGER_TEST_HELPER"

func helperMain() int { return 2 }
