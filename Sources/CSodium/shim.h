#ifndef CAIRN_CSODIUM_SHIM_H
#define CAIRN_CSODIUM_SHIM_H
// libsodium, wrapped once. Only the CairnCrypto module imports this (see Package.swift).
#include <sodium.h>
#endif
