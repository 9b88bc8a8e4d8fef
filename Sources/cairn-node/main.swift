import CairnCLI

await CairnTool.node()
