"""Test support shared by every test: a real registry on loopback, test images."""
