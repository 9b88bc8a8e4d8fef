internal import CSodium
import CairnWire

/// `sodium_init` runs once, on first use of any primitive (Swift globals initialise lazily and
/// thread-safely). It fails only when the system offers no randomness source.
private let sodiumReady: Bool = sodium_init() >= 0

/// Call at the top of every entry point that reaches libsodium.
@inline(__always)
func ensureSodium() {
    precondition(sodiumReady, "libsodium could not be initialised (no system randomness source)")
}

/// Turns a libsodium status code into a thrown error.
@inline(__always)
func check(_ status: Int32, _ code: CryptoError.Code, _ message: @autoclosure () -> String) throws {
    guard status == 0 else { throw CryptoError(code, message()) }
}
