
enum CompressionModule {}
