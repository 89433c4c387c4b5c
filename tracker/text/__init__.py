"""Text from outside: made storable on the way in, shown safely on the way out."""
