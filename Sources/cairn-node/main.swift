import CairnCLI

CairnTool.node()
