import CairnCLI

CairnTool.broker()
