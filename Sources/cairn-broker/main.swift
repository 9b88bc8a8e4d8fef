import CairnCLI

await CairnTool.broker()
