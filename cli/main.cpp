#include <cstdio>
int main() { std::puts("ilre"); return 0; }
