/* implicit im2col packing: written in the main branch */
