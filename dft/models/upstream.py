"""The versions of upstream code whose facts this package carries (prompt strings, stop words): one place."""

DFT_COMMIT = "e153181f71522428ed030f4519702890c699ed6b"  # yongliang-wu/DFT, the version read
