; estimated printing time (normal mode) = 106751991167300d
