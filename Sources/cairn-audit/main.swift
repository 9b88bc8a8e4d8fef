import CairnCLI

CairnTool.audit()
