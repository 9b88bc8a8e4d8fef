import CairnCLI

await CairnTool.audit()
